"""Audit log of privileged actions: written in the caller's transaction, queryable by scope."""
