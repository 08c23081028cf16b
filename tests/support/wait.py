"""Waiting on a condition from a synchronous test: polled, with a generous deadline, so a busy
machine only makes the test slower."""

from __future__ import annotations

import time
from collections.abc import Callable


def until(condition: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} not within {timeout:g} s"
        time.sleep(0.1)
