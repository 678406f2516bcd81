"""Endpoints under /v1/health."""

from __future__ import annotations

from typing import Any

from . import catalog
from .filters import apply_filter
from .request import Request
from .routing import Router


def _check_readable(request: Request, check: dict[str, Any]) -> bool:
    if check.get("ServiceName"):
        return request.is_allowed("service", check["ServiceName"], "read")
    return request.is_allowed("node", check["Node"], "read")


def service_health(request: Request, name: str) -> Any:
    results = []
    for node, service in catalog.services_named(request.store, name):
        checks = catalog.checks_for_service(request.store, node["Node"], service["ID"])
        results.append(
            {
                "Node": catalog.node_view(node),
                "Service": catalog.service_view(service),
                "Checks": [catalog.check_view(check) for check in checks],
            }
        )
    results = request.filter_allowed(
        results,
        lambda item: request.is_allowed("service", item["Service"]["Service"], "read")
        and request.is_allowed("node", item["Node"]["Node"], "read"),
    )
    if request.has_param("passing"):
        results = [item for item in results if all(check["Status"] == "passing" for check in item["Checks"])]
    return apply_filter(results, request.param("filter"))


def service_checks(request: Request, name: str) -> Any:
    checks = [
        catalog.check_view(check)
        for _, check in sorted(request.store.checks.items())
        if check.get("ServiceName") == name
    ]
    checks = request.filter_allowed(checks, lambda check: _check_readable(request, check))
    return apply_filter(checks, request.param("filter"))


def node_checks(request: Request, node_name: str) -> Any:
    checks = [
        catalog.check_view(check) for (owner, _), check in sorted(request.store.checks.items()) if owner == node_name
    ]
    checks = request.filter_allowed(checks, lambda check: _check_readable(request, check))
    return apply_filter(checks, request.param("filter"))


def register_routes(router: Router) -> None:
    router.add(r"/v1/health/service/(?P<name>[^/]+)", {"GET": service_health})
    router.add(r"/v1/health/checks/(?P<name>[^/]+)", {"GET": service_checks})
    router.add(r"/v1/health/node/(?P<node_name>[^/]+)", {"GET": node_checks})
