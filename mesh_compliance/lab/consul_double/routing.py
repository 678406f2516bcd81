"""Path and method routing for the HTTP API."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import ApiError

Handler = Callable[..., Any]


@dataclass
class Route:
    """A path pattern and the handler for each allowed method."""

    pattern: re.Pattern[str]
    handlers: dict[str, Handler] = field(default_factory=dict)


class MethodNotAllowed(ApiError):
    """A known path requested with a method it does not accept."""

    def __init__(self, method: str, allowed: list[str]) -> None:
        super().__init__(405, f"method {method} not allowed")
        self.allow_header = ",".join(["OPTIONS", *allowed])


class Router:
    """Match request paths against routes in the order they were added."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, pattern: str, methods: dict[str, Handler]) -> None:
        self.routes.append(Route(re.compile(pattern), dict(methods)))

    def resolve(self, method: str, path: str) -> tuple[Handler, dict[str, str]] | None:
        """Return the handler and path parameters, None for an unknown path, or raise MethodNotAllowed."""
        for route in self.routes:
            match = route.pattern.fullmatch(path)
            if match is None:
                continue
            handler = route.handlers.get(method)
            if handler is None:
                raise MethodNotAllowed(method, list(route.handlers))
            return handler, match.groupdict()
        return None
