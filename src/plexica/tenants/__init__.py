"""Tenancy: tenants, their lifecycle, provisioning saga, tenant context and fleet migrations."""
