"""Open-loop load for tests and benches on a real topology: a request every 1/rate s whatever
the answers (none waits for another), each answer recorded with when it was sent."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx


@dataclass
class Shot:
    sent: float
    status: str  # the HTTP status, or the transport error's name
    seconds: float
    detail: str = ""  # of a failure: its Retry-After and the start of its body, to tell who said it


@dataclass
class OpenLoop:
    url: str
    headers: dict[str, str]
    rate: float
    shots: list[Shot] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    async def _one(self, http: httpx.AsyncClient) -> None:
        sent = time.monotonic()
        detail = ""
        try:
            answer = await http.get(self.url, headers=self.headers)
            status = str(answer.status_code)
            if not answer.is_success:
                detail = f"retry-after={answer.headers.get('retry-after')} {answer.text[:80]!r}"
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        self.shots.append(Shot(sent, status, time.monotonic() - sent, detail))

    async def _run(self) -> None:
        limits = httpx.Limits(max_connections=400, max_keepalive_connections=100)
        async with httpx.AsyncClient(timeout=30.0, limits=limits) as http:
            tasks: set[asyncio.Task[None]] = set()
            began, n = time.monotonic(), 0
            while not self.stop.is_set():
                task = asyncio.create_task(self._one(http))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                n += 1
                await asyncio.sleep(max(0.0, began + n / self.rate - time.monotonic()))
            await asyncio.gather(*tasks)

    def __enter__(self) -> OpenLoop:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        assert self._thread is not None
        self._thread.join(120)

    def failed(self) -> Counter[str]:
        return Counter(s.status for s in self.shots if not s.status.startswith("2"))

    def failures(self) -> Counter[str]:
        """The failures by status and what they said."""
        return Counter(f"{s.status} {s.detail}" for s in self.shots if not s.status.startswith("2"))

    def percentile_ms(self, p: float) -> float:
        ordered = sorted(s.seconds for s in self.shots)
        return 1000 * ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]
