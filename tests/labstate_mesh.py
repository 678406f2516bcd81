"""Lab state changes for the mesh controls: agent services, drop-ins and a stand-in systemctl."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from mesh_compliance.lab.seed_mesh import gateway_registration


def register_agent_service(state, body: dict) -> None:
    """Register a service with the lab agent; restore puts the seeded gateway back."""
    state.consul_ok("PUT", "/v1/agent/service/register", json=body)
    state.on_restore(lambda: restore_gateway(state, body["ID"]))


def deregister_gateway(state, service_id: str = "carbonio-gateway") -> None:
    state.consul_ok("PUT", f"/v1/agent/service/deregister/{service_id}")
    state.on_restore(lambda: state.consul_ok("PUT", "/v1/agent/service/register", json=gateway_registration()))


def restore_gateway(state, service_id: str) -> None:
    if service_id != "carbonio-gateway":
        state.consul("PUT", f"/v1/agent/service/deregister/{service_id}")
    state.consul_ok("PUT", "/v1/agent/service/register", json=gateway_registration())


def write_dropin(state, unit: str, name: str, text: str) -> Path:
    """Write /etc/systemd/system/UNIT.d/NAME in the lab root; restore removes the directory."""
    directory = state.root_path(f"/etc/systemd/system/{unit}.d")
    created = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text)
    os.chmod(path, 0o644)
    state.on_restore(lambda: shutil.rmtree(directory) if created else path.unlink(missing_ok=True))
    return path


STAND_IN_SYSTEMCTL = """\
#!/bin/sh
# Stand-in for systemctl on a machine without a running systemd: it handles
# is-system-running and `show` with output built from the files in {state_dir}.
case "$1" in
    is-system-running) echo running ;;
    show)
        restarts=$(cat {state_dir}/NRestarts)
        if [ -e {state_dir}/restarting ]; then echo $((restarts + 1)) > {state_dir}/NRestarts; fi
        echo "ActiveState=$(cat {state_dir}/ActiveState)"
        echo "SubState=$(cat {state_dir}/SubState)"
        echo "NRestarts=$restarts"
        ;;
    *) echo "stand-in systemctl: $* is not supported" >&2; exit 1 ;;
esac
"""


def stand_in_systemctl(directory: Path, active: str = "active", sub: str = "running",
                       restarts: int = 0, restarting: bool = False) -> dict:
    """Write a stand-in systemctl into ``directory``; return the environment that puts it first on PATH.

    With ``restarting``, every `show` counts one more restart, as a unit in a restart loop does.
    """
    state_dir = directory / "unit-state"
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "ActiveState").write_text(active)
    (state_dir / "SubState").write_text(sub)
    (state_dir / "NRestarts").write_text(str(restarts))
    if restarting:
        (state_dir / "restarting").write_text("")

    bin_dir = directory / "bin"
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "systemctl"
    script.write_text(STAND_IN_SYSTEMCTL.format(state_dir=state_dir))
    os.chmod(script, 0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
