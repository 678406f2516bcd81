"""Service-mesh facts the mesh controls and fixers share: intentions, protocols and unit state."""

from __future__ import annotations

from dataclasses import dataclass

from mesh_compliance.errors import TargetError
from mesh_compliance.target import Target

WILDCARD = "*"

# Consul's protocol when neither service-defaults nor proxy-defaults sets one.
DEFAULT_PROTOCOL = "tcp"

# The name `consul connect envoy -gateway=terminating -register` registers
# when -service is not given (command/connect/envoy/envoy.go).
DEFAULT_GATEWAY_SERVICE = "terminating-gateway"

# Values of Status in /v1/agent/members (serf's MemberStatus).
MEMBER_STATUS = {0: "none", 1: "alive", 2: "leaving", 3: "left", 4: "failed"}


# -- intentions ------------------------------------------------------------------

def matching_intentions(intentions: list[dict], source: str, destination: str) -> list[dict]:
    """Return the intentions that apply to source -> destination, highest precedence first."""
    found = [
        item for item in intentions
        if item.get("SourceName") in (source, WILDCARD) and item.get("DestinationName") in (destination, WILDCARD)
    ]
    return sorted(found, key=lambda item: -int(item.get("Precedence") or 0))


def describe_intention(item: dict) -> str:
    action = item.get("Action") or "L7 permissions"
    return (f"{item.get('SourceName')} -> {item.get('DestinationName')}: {action} "
            f"(precedence {item.get('Precedence')})")


def denial_reason(matches: list[dict], source: str, destination: str, default_policy: str | None) -> str:
    """Explain why Consul denies source -> destination."""
    if not matches:
        return (f"no intention allows {source} -> {destination}, and the default policy "
                f"({default_policy or 'unknown'}) denies it")

    top = matches[0]
    exact = top.get("SourceName") == source and top.get("DestinationName") == destination
    if top.get("Permissions"):
        return (f"the intention {describe_intention(top)} has L7 permissions, which Consul "
                "evaluates as deny for this check")
    if exact:
        return f"an explicit deny for {source} -> {destination} exists ({describe_intention(top)})"
    return f"the wildcard intention {describe_intention(top)} takes precedence and denies {source} -> {destination}"


# -- protocol --------------------------------------------------------------------

@dataclass(frozen=True)
class EffectiveProtocol:
    protocol: str
    origin: str            # which entry set it, or Consul's default
    explicit: bool         # set by the service's own service-defaults


def effective_protocol(service: str, service_defaults: dict | None, proxy_defaults: dict | None) -> EffectiveProtocol:
    """Resolve the protocol as Consul does: service-defaults, else proxy-defaults global, else tcp."""
    own = str((service_defaults or {}).get("Protocol") or "").strip().lower()
    if own:
        return EffectiveProtocol(own, f"service-defaults/{service}", True)

    config = (proxy_defaults or {}).get("Config") or {}
    # Config is free-form, so the key may be written in any case.
    shared = next((str(value) for key, value in config.items() if key.lower() == "protocol" and value), "")
    if shared.strip():
        return EffectiveProtocol(shared.strip().lower(), "proxy-defaults/global Config.protocol", False)
    return EffectiveProtocol(DEFAULT_PROTOCOL, "Consul's default", False)


# -- unit state ------------------------------------------------------------------

UNIT_STATE_PROPERTIES = ("ActiveState", "SubState", "NRestarts")


def unit_state(target: Target, unit: str) -> dict[str, str]:
    """Return ActiveState, SubState and NRestarts from ``systemctl show`` on a live node."""
    result = target.systemctl("show", "-p", ",".join(UNIT_STATE_PROPERTIES), "--", unit)
    if result.rc != 0:
        raise TargetError(f"systemctl show {unit} failed on {target.name}: {result.stderr.strip()}")

    values = {}
    for line in result.stdout.splitlines():
        name, separator, value = line.partition("=")
        if separator and name in UNIT_STATE_PROPERTIES:
            values[name] = value.strip()
    if "ActiveState" not in values:
        raise TargetError(f"systemctl show {unit} printed no ActiveState on {target.name}: {result.stdout.strip()[:200]}")
    return values


def describe_unit_state(values: dict[str, str]) -> str:
    return ", ".join(f"{name}={values.get(name, 'unknown')}" for name in UNIT_STATE_PROPERTIES)
