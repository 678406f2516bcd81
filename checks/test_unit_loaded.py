"""The gateway unit as systemd loads it: admin copies, drop-ins and pending reloads."""

from mesh_compliance.controls import control
from mesh_compliance.gateway_unit import expected_exec_start, findings, changes, shadows
from mesh_compliance.systemd import load_unit, read_layers
from mesh_compliance.units import UnitParseError

FIX_HINT = "--fix --allow=remove-unit-override moves it aside"


@control(
    "gateway-unit-loaded",
    title="The gateway unit that systemd loads runs the documented command as the gateway user",
    severity="high",
    step="11",
    scope="node",
    rationale="systemd runs the unit it loaded, not the packaged file: a copy in /etc/systemd/system "
              "or a drop-in can drop -token-file or change the user, and a change made without "
              "daemon-reload is not what runs.",
)
def test_gateway_unit_loaded(site, target, evidence):
    gateway = site.gateway
    evidence.expect("fragment", gateway.unit_path)
    evidence.expect("ExecStart", expected_exec_start(site))
    evidence.expect("User", gateway.user)
    evidence.expect("NeedDaemonReload", "no")

    try:
        loaded = load_unit(target, gateway.unit)
        layers = read_layers(target, loaded)
    except UnitParseError as exc:
        raise AssertionError(evidence.why(f"unit {gateway.unit} cannot be parsed: {exc}")) from None

    evidence.observe("source", loaded.source)
    evidence.observe("fragment", loaded.fragment_path or "none")
    evidence.observe("drop-ins", list(loaded.dropin_paths))
    evidence.observe("ExecStart", [" ".join(command) for command in loaded.exec_start_commands])
    evidence.observe("User", loaded.user or "unset (root)")
    evidence.observe("NeedDaemonReload", _reload_text(loaded.need_daemon_reload))
    evidence.observe("LoadState", loaded.load_state)

    assert loaded.load_state != "masked", evidence.why(f"unit {gateway.unit} is masked, so systemd will not start it")
    assert loaded.load_state != "not-found", evidence.why(f"systemd finds no unit file for {gateway.unit}")

    failures = [_describe(finding, gateway.unit_path) for finding in findings(loaded, layers, site)]
    if loaded.need_daemon_reload:
        failures.append(f"unit files changed since the last daemon-reload, so the loaded {gateway.unit} differs from them")
    assert not failures, evidence.why("; ".join(failures))

    for key in ("ExecStart", "User"):
        for change in changes(layers, key):
            if change.layer.kind == "drop-in":
                evidence.warn(f"drop-in {change.layer.path} changes {key}; the loaded value is still the documented one")
    if loaded.fragment_path != gateway.unit_path:
        evidence.warn(f"systemd loads {loaded.fragment_path} instead of {gateway.unit_path}; "
                      "its ExecStart and User are the documented ones, but the gateway-unit control audits the other file")


def _describe(finding, documented_path: str) -> str:
    what = f"{finding.key}: {', '.join(finding.problems)}"
    cause = finding.cause
    if cause is None:
        return f"no unit file sets {finding.key} as documented ({what})"

    path = cause.layer.path
    if cause.layer.kind == "drop-in":
        return f"drop-in {path} changes {what}; it sets {finding.key} to {cause.value} ({FIX_HINT})"
    if shadows(path, documented_path):
        return f"admin copy {path} shadows {documented_path} and differs in {what} ({FIX_HINT})"
    if path == documented_path:
        return f"fragment {path} differs in {what} (the gateway-unit fixer rewrites it)"
    return f"fragment {path}, loaded in place of {documented_path}, differs in {what}"


def _reload_text(value: bool | None) -> str:
    if value is None:
        return "unknown (computed from unit files)"
    return "yes" if value else "no"
