"""systemd unit control: the gateway's `consul connect envoy` unit."""

from mesh_compliance.controls import control
from mesh_compliance.expected import exec_start_flags
from mesh_compliance.units import UnitParseError, parse_exec_start, parse_unit


@control(
    "gateway-unit",
    title="Gateway unit runs consul connect envoy with the documented flags and starts at boot",
    severity="high",
    step="11",
    scope="node",
    rationale="The unit starts the Envoy gateway as the gateway user with the gateway token; "
              "without -token-file the gateway's identity is left to the agent's default token.",
)
def test_gateway_unit(site, target, evidence):
    gateway = site.gateway
    flags = exec_start_flags(site)
    evidence.expect("unit file", gateway.unit_path)
    evidence.expect("ExecStart", f"{gateway.consul_binary} connect envoy " + " ".join(_flag_text(k, v) for k, v in flags.items()))
    evidence.expect("User", gateway.user)
    evidence.expect("enabled", "enabled")

    text = target.read_text(gateway.unit_path)
    assert text is not None, evidence.why(f"unit file {gateway.unit_path} does not exist on {target.name}")

    try:
        unit = parse_unit(text)
        lines = unit.values("Service", "ExecStart")
        command = parse_exec_start(lines[-1]) if lines else None
    except UnitParseError as exc:
        raise AssertionError(evidence.why(f"unit file {gateway.unit_path} cannot be parsed: {exc}")) from None

    evidence.observe("ExecStart", lines or "none")
    assert len(lines) == 1, evidence.why(f"unit file has {len(lines)} ExecStart lines, expected one")
    runs = f"ExecStart runs {command.binary} {' '.join(command.subcommand)}, expected {gateway.consul_binary} connect envoy"
    assert command.binary == gateway.consul_binary, evidence.why(runs)
    assert command.subcommand == ("connect", "envoy"), evidence.why(runs)

    wrong = {name: command.flags.get(name, "missing") for name, value in flags.items() if command.flags.get(name) != value}
    assert not wrong, evidence.why(f"ExecStart flags differ: {wrong}")
    assert not command.repeated, evidence.why(f"ExecStart repeats flags {list(command.repeated)}")

    user = unit.value("Service", "User")
    evidence.observe("User", user or "unset (root)")
    assert user == gateway.user, evidence.why(f"unit runs as {user or 'root'}, expected {gateway.user}")

    state = target.unit_enabled_state(gateway.unit)
    evidence.observe("enabled", state)
    assert state == "enabled", evidence.why(f"unit {gateway.unit} is {state}, so it will not start at boot")


def _flag_text(name, value) -> str:
    return f"-{name}" if value is True else f"-{name} {value}"
