"""The Billing plugin for Plexica, built on the public SDK only."""
