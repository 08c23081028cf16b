"""Runtime feature flags: definitions in the platform schema, evaluated from a local cache."""
