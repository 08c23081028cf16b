"""Shared plumbing: database, errors, logging, metrics, health, embedded PostgreSQL."""
