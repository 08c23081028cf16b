"""Benchmarks: ``python -m bench.<name>``.

Realm keys made in a run are sealed with ``PLEXICA_KEY_ENCRYPTION_KEY`` (ADR 0150), or with a key
made for the run; processes a benchmark starts inherit it.
"""

import os
import secrets

from plexica.identity import custody

os.environ.setdefault(custody.ENV, secrets.token_urlsafe(48))
custody.install(custody.KeyRing.parse(os.environ[custody.ENV]))
