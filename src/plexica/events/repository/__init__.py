"""SQL of events (platform schema), by table: the outbox (and the embedded relay that moves it to
the delivery queue), the subscriptions and consumers, the delivery queue, the dead letters, and
the plugin_api functions a plugin's own login calls. Only plexica.events imports it.

Queries built with f-strings only splice the package's own constant column lists."""
