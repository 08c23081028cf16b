"""Semantic versions and version ranges for manifests (``>=0.1.0 <2``, ``^1.2``, ``~1.4.0``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

_VERSION_RE = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)
_PARTIAL_RE = re.compile(r"^(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-([0-9A-Za-z.-]+))?$")
_COMPARATOR_RE = re.compile(r"^(>=|<=|>|<|=|\^|~)?\s*(\S+)$")


@total_ordering
@dataclass(frozen=True)
class Version:
    major: int
    minor: int
    patch: int
    pre: str = ""

    @classmethod
    def parse(cls, text: str) -> Version:
        m = _VERSION_RE.match(text.strip())
        if not m:
            raise ValueError(f"{text!r} is not a semantic version (MAJOR.MINOR.PATCH)")
        return cls(int(m[1]), int(m[2]), int(m[3]), m[4] or "")

    def _key(self) -> tuple[int, int, int, int, str]:
        # A pre-release sorts before its release.
        return (self.major, self.minor, self.patch, 0 if self.pre else 1, self.pre)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() < other._key()

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}" + (f"-{self.pre}" if self.pre else "")


def _partial(text: str) -> tuple[Version, int]:
    """A version where minor/patch may be missing; also returns how many parts were given."""
    m = _PARTIAL_RE.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a version")
    given = 1 + (m[2] is not None) + (m[3] is not None)
    return Version(int(m[1]), int(m[2] or 0), int(m[3] or 0), m[4] or ""), given


def _bump(v: Version, part: int) -> Version:
    if part == 0:
        return Version(v.major + 1, 0, 0)
    if part == 1:
        return Version(v.major, v.minor + 1, 0)
    return Version(v.major, v.minor, v.patch + 1)


@dataclass(frozen=True)
class VersionRange:
    """Comparators joined by spaces or commas, all of which must hold; ``*`` matches all."""

    text: str
    bounds: tuple[tuple[str, Version], ...]

    @classmethod
    def parse(cls, text: str) -> VersionRange:
        text = text.strip()
        if text in ("*", ""):
            return cls("*", ())
        bounds: list[tuple[str, Version]] = []
        for token in re.split(r"[\s,]+", re.sub(r"(>=|<=|>|<|=|\^|~)\s+", r"\1", text)):
            m = _COMPARATOR_RE.match(token)
            if not m:
                raise ValueError(f"{token!r} is not a version comparator")
            op, v, given = m[1] or "=", *_partial(m[2])
            if op == "^":
                first = 0 if v.major else (1 if v.minor or given < 3 else 2)
                bounds += [(">=", v), ("<", _bump(v, min(first, given - 1)))]
            elif op == "~":
                bounds += [(">=", v), ("<", _bump(v, 1 if given >= 2 else 0))]
            elif op == "=" and given < 3:
                bounds += [(">=", v), ("<", _bump(v, given - 1))]
            else:
                bounds.append((op, v))
        return cls(text, tuple(bounds))

    def contains(self, version: Version | str) -> bool:
        v = Version.parse(version) if isinstance(version, str) else version
        checks = {
            ">=": v.__ge__,
            "<=": v.__le__,
            ">": v.__gt__,
            "<": v.__lt__,
            "=": v.__eq__,
        }
        return all(checks[op](bound) for op, bound in self.bounds)

    def __str__(self) -> str:
        return self.text
