"""A strict reader of the Prometheus text exposition format, for tests.

It accepts what the format allows for gauges (HELP and TYPE lines, samples
with escaped label values, an optional timestamp) and raises ValueError on
anything else, so a test that parses a file also checks that it is valid.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL_NAME = r"[a-zA-Z_][a-zA-Z0-9_]*"
SAMPLE = re.compile(rf"^(?P<name>{NAME})(?:\{{(?P<labels>.*)\}})? (?P<value>\S+)(?: (?P<ts>-?\d+))?$")
LABEL = re.compile(rf'\s*(?P<name>{LABEL_NAME})="(?P<value>(?:[^"\\\n]|\\[\\"n])*)"\s*(?:,|$)')
COMMENT = re.compile(rf"^# (?P<kind>HELP|TYPE) (?P<name>{NAME})(?: (?P<text>.*))?$")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


@dataclass
class Family:
    help: str = ""
    type: str = "untyped"
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)


def _unescape(value: str) -> str:
    return re.sub(r"\\([\\\"n])", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def _labels(text: str | None, line: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    position = 0
    while text and position < len(text):
        match = LABEL.match(text, position)
        if match is None:
            raise ValueError(f"invalid labels in {line!r}")
        if match.group("name") in labels:
            raise ValueError(f"repeated label {match.group('name')} in {line!r}")
        labels[match.group("name")] = _unescape(match.group("value"))
        position = match.end()
    return labels


def parse(text: str) -> dict[str, Family]:
    """Return each metric family of ``text`` with its HELP, TYPE and samples."""
    if not text.endswith("\n"):
        raise ValueError("the exposition must end with a newline")
    families: dict[str, Family] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        comment = COMMENT.match(line)
        if comment:
            family = families.setdefault(comment.group("name"), Family())
            if comment.group("kind") == "TYPE":
                if comment.group("text") not in TYPES or family.samples:
                    raise ValueError(f"invalid TYPE line, or TYPE after samples: {line!r}")
                family.type = comment.group("text")
            else:
                family.help = comment.group("text") or ""
            continue
        if line.startswith("#"):
            continue
        sample = SAMPLE.match(line)
        if sample is None:
            raise ValueError(f"invalid sample line: {line!r}")
        value = float(sample.group("value"))
        families.setdefault(sample.group("name"), Family()).samples.append((_labels(sample.group("labels"), line), value))
    return families
