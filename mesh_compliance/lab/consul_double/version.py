"""Consul version numbers, used to switch between older and newer API behaviour."""

from __future__ import annotations

import re
from dataclasses import dataclass

_VERSION_PATTERN = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?(?:[-+].*)?$")


@dataclass(frozen=True, order=True)
class ConsulVersion:
    """A Consul release number such as 1.21.4."""

    major: int
    minor: int
    patch: int = 0

    @classmethod
    def parse(cls, text: str) -> "ConsulVersion":
        """Parse "1.21.4", "v1.15.0" or "1.15.0-rc1"; raise ValueError otherwise."""
        match = _VERSION_PATTERN.match(text.strip())
        if match is None:
            raise ValueError(f"invalid Consul version {text!r}: expected MAJOR.MINOR[.PATCH]")
        return cls(int(match.group(1)), int(match.group(2)), int(match.group(3) or 0))

    def at_least(self, major: int, minor: int) -> bool:
        return (self.major, self.minor) >= (major, minor)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"
