"""SQL of the plugins domain, by table: the catalog's versions, the installations, the plugin's
objects in a tenant schema and its own database login. Only plexica.plugins imports it."""
