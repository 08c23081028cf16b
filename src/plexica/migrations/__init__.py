"""Two Alembic trees: ``platform`` (the platform schema) and ``tenant`` (each tenant schema)."""
