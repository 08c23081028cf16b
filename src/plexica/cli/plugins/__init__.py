"""``plexica plugin ...``: the catalog, installations per tenant, the plugin's own logins, and
the developer's workbench. Each module adds its commands to ``common.plugin_app``."""
