"""The decommissioned end state: the gateway unit, config entry, catalog entry and tokens removed.

The published removal steps cannot reach this state: ``systemd stop|disable``
is not a command (the tool is systemctl), and the agent deregister endpoint
cannot remove a service registered in the catalog on another node.
"""

from mesh_compliance.controls import control
from mesh_compliance.redact import register_secret
from mesh_compliance.systemd import (
    ENABLED_STATES, active_state, enablement_links, find_dropins, load_unit, own_dropins, unit_file_copies,
)

PROFILE = ("decommissioned",)
STOPPED_STATES = ("inactive", "failed")


@control(
    "decom-unit-removed",
    title="The gateway unit is stopped, disabled and its files removed",
    severity="high",
    step="removal",
    scope="node",
    rationale="An enabled gateway unit starts again at boot and registers the gateway in the mesh; "
              "the published removal runs `systemd stop|disable`, which fails and leaves it enabled.",
    profiles=PROFILE,
)
def test_decom_unit_removed(site, target, evidence):
    unit = site.gateway.unit
    evidence.expect("stopped", "ActiveState inactive or failed")
    evidence.expect("enabled", "not enabled, no enablement links")
    evidence.expect("unit files", "no fragment in the unit search path, no drop-ins")

    failures = []
    if target.root or not target.systemd_running():
        evidence.observe("stopped", "not applicable: no running systemd to ask (root directory or offline node)")
    else:
        state = active_state(target, unit)
        evidence.observe("stopped", f"ActiveState {state}")
        if state not in STOPPED_STATES:
            failures.append(f"unit {unit} is {state}, not stopped")

    enabled = target.unit_enabled_state(unit)
    links = enablement_links(target, unit)
    evidence.observe("enabled", f"{enabled}; links: {', '.join(links) or 'none'}")
    if enabled in ENABLED_STATES:
        failures.append(f"unit {unit} is {enabled}, so it starts at boot")
    elif links:
        failures.append(f"enablement links remain: {', '.join(links)}")

    files = _unit_files(target, unit)
    evidence.observe("unit files", files or "none")
    if files:
        failures.append(f"unit files remain: {', '.join(files)}")

    assert not failures, evidence.why("; ".join(failures))


def _unit_files(target, unit: str) -> list[str]:
    """Return the unit's files in the search path and, on a live node, the ones systemd loaded."""
    files = unit_file_copies(target, unit) + own_dropins(tuple(find_dropins(target, unit)), unit)
    if not target.root and target.systemd_running():
        loaded = load_unit(target, unit)
        shown = ([loaded.fragment_path] if loaded.fragment_path else []) + own_dropins(loaded.dropin_paths, unit)
        files += [path for path in shown if path not in files]
    return files


@control(
    "decom-config-entry-deleted",
    title="The gateway's terminating-gateway config entry is deleted",
    severity="high",
    step="removal",
    scope="cluster",
    rationale="While the entry exists, any gateway registered under its name keeps routing mesh traffic "
              "to the external database.",
    profiles=PROFILE,
)
def test_decom_config_entry_deleted(site, consul, evidence):
    name = site.gateway.service
    evidence.expect("terminating-gateway entry", f"{name} absent")

    entry = consul.config_entry("terminating-gateway", name)
    if entry is None:
        evidence.observe("terminating-gateway entry", "absent")
    else:
        linked = [service.get("Name", "?") for service in entry.get("Services") or []]
        evidence.observe("terminating-gateway entry", f"{name} exists, ModifyIndex {entry.get('ModifyIndex')}")
        evidence.observe("linked services", linked)
    assert entry is None, evidence.why(f"terminating-gateway entry {name} still exists")


@control(
    "decom-service-deregistered",
    title="The external database service is deregistered from the catalog",
    severity="high",
    step="removal",
    scope="cluster",
    rationale="A catalog entry survives the published agent deregister call; if carbonio-files-db is "
              "installed again later, the service has two instances and traffic can go to the old one.",
    profiles=PROFILE,
)
def test_decom_service_deregistered(site, consul, evidence):
    service = site.external_service
    evidence.expect("catalog", f"no {service.name} instance on node {service.node}")

    entries = consul.catalog_service(service.name)
    remaining = [entry for entry in entries if entry.get("Node") == service.node]
    evidence.observe("catalog", [f"{entry['Node']}/{entry.get('ServiceID')}" for entry in entries] or "none")
    assert not remaining, evidence.why(
        f"service {service.name} is still registered on node {service.node} with ServiceID "
        + ", ".join(str(entry.get("ServiceID")) for entry in remaining)
    )


@control(
    "decom-tokens-unlinked",
    title="No ACL token is linked to the gateway policy",
    severity="medium",
    step="removal",
    scope="cluster",
    rationale="A token linked to the gateway policy can still register the gateway and the database "
              "service after the removal; sites that ask for it delete those tokens.",
    profiles=PROFILE,
)
def test_decom_tokens_unlinked(site, consul, evidence):
    if not site.decommission.unlink_tokens:
        evidence.not_applicable("the site does not ask to unlink tokens ([decommission] unlink_tokens is false)")

    evidence.expect("tokens linked to the policy", "none")
    policy = consul.policy_by_name(site.acl.policy)
    if policy is None:
        evidence.observe("policy", f"{site.acl.policy} does not exist, so no token links it")
        return

    tokens = consul.tokens_for_policy(policy["ID"])
    for token in tokens:
        if token.get("SecretID"):
            register_secret(token["SecretID"], "Consul token")
    described = [f"{token['AccessorID']} ({token.get('Description') or 'no description'})" for token in tokens]
    evidence.observe("tokens linked to the policy", described or "none")
    assert not tokens, evidence.why(f"{len(tokens)} token(s) are linked to policy {site.acl.policy}")
