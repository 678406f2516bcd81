"""Secret registry and redaction.

Every secret the suite reads (tokens, passwords) is registered here once.
Text bound for a log line, an assertion message or a report passes through
``redact`` first, so a registered value never leaves the process.
"""

from __future__ import annotations

import logging
import threading

MASK = "<redacted>"

# Values shorter than this are not masked: masking "a", "1" or "null" would
# destroy every report while protecting nothing worth protecting.
MIN_SECRET_LENGTH = 6

_lock = threading.Lock()
# Each secret with the kind it is (for example "Consul token"), which reports
# may name without naming the value.
_secrets: dict[str, str] = {}


def register_secret(value: str | None, kind: str = "secret") -> None:
    """Remember ``value`` so that ``redact`` masks it from now on."""
    if value and len(value) >= MIN_SECRET_LENGTH:
        with _lock:
            _secrets.setdefault(value, kind)


def known_secrets() -> frozenset[str]:
    with _lock:
        return frozenset(_secrets)


def secret_kinds() -> dict[str, str]:
    """Return each registered secret with its kind."""
    with _lock:
        return dict(_secrets)


def redact(text: str) -> str:
    """Return ``text`` with every registered secret replaced by a mask."""
    if not text:
        return text
    # Longest first, so a secret that contains another is masked whole.
    for secret in sorted(known_secrets(), key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class RedactingFilter(logging.Filter):
    """Logging filter that masks registered secrets in every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return True
