"""Progress bars are drawn on a terminal only: a real pseudo-terminal shows the bar, a pipe gets
nothing extra (scripts and ``--json`` read stdout and stderr unchanged)."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

SCRIPT = (
    "from plexica.cli.progress import bar\n"
    "with bar('copying objects') as advance:\n"
    "    for n in range(1, 4):\n"
    "        advance(n, 3)\n"
    "print('done')\n"
)


def _read_all(fd: int) -> str:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def test_a_terminal_sees_the_bar() -> None:
    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": "100", "TERM": "xterm"}
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT], stdout=follower, stderr=follower, env=env
    )
    os.close(follower)
    out = _read_all(leader)
    os.close(leader)
    assert proc.wait(timeout=120) == 0
    assert "copying objects" in out
    assert "3/3" in out
    assert "done" in out


def test_a_pipe_gets_nothing_extra() -> None:
    r = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, check=True
    )
    assert r.stdout == "done\n"
    assert r.stderr == ""
