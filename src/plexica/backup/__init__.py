"""Backup and restore of one tenant: its schema (pg_dump) and its bucket's objects, in one tar."""
