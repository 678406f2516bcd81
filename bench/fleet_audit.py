"""Measure fleet audits over real SSH: time, peak memory and SSH connections per node.

For each fleet size it starts that many test hosts (network namespaces with
their own sshd, see mesh_compliance.lab.fleet) next to one lab, lists them in a
site file as Files and Proxy nodes, and runs the audit serially and with two
pytest-xdist workers. It records the wall time, the peak resident memory of
the pytest processes and how many SSH logins each node's sshd saw.

Run as root from the checkout: .venv/bin/python bench/fleet_audit.py [SIZES...]
Results are printed as a Markdown table; bench/fleet-audit.md keeps a run.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(CHECKOUT))

from mesh_compliance.lab import Lab  # noqa: E402
from mesh_compliance.lab.fleet import TestHosts  # noqa: E402

DEFAULT_SIZES = (1, 5, 10, 50)
CONTROLS = ("files-db-package-absent", "files-node-packages", "proxy-node-packages")


def site_text(lab, hosts) -> str:
    text = Path(lab.site_file).read_text() + f'\n[fleet]\nssh_config = "{hosts.ssh_config}"\n'
    for index, host in enumerate(hosts.hosts):
        role = "files" if index % 2 == 0 else "proxy"
        text += f'\n[[nodes]]\nname = "node-{index}"\nroles = ["{role}"]\nconnection = "{host.connection}"\n'
    return text


def close_connections(hosts) -> None:
    """Stop the SSH control masters, so each run opens and counts its own connections."""
    for host in hosts.hosts:
        subprocess.run(["ssh", "-F", str(hosts.ssh_config), "-O", "exit", f"root@{host.address}"],
                       capture_output=True, check=False)


def logins(hosts) -> list[int]:
    return [host.sshd_log.read_text(errors="replace").count("Accepted publickey") for host in hosts.hosts]


def audit(lab, site: Path, workers: int) -> tuple[float, int]:
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--rootdir={CHECKOUT}",
               *lab.pytest_args, f"--site={site}", *[f"--control={c}" for c in CONTROLS], str(CHECKOUT / "checks")]
    if workers:
        command += ["-n", str(workers)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.monotonic()
    completed = subprocess.run(command, cwd=CHECKOUT, capture_output=True, text=True)
    elapsed = time.monotonic() - started
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if completed.returncode not in (0, 10):
        raise SystemExit(f"audit failed with exit {completed.returncode}:\n{completed.stdout[-2000:]}")
    # RUSAGE_CHILDREN keeps the largest child so far; report it only when it grew.
    return elapsed, max(peak_kib, before)


def main(sizes: list[int]) -> None:
    workspace = Path(tempfile.mkdtemp(prefix="mesh-bench-"))
    os.chmod(workspace, 0o755)
    lab = Lab.up(workspace / "lab")
    rows = []
    try:
        for size in sizes:
            hosts = TestHosts.up(workspace / f"fleet-{size}", size)
            try:
                site = workspace / f"site-{size}.toml"
                site.write_text(site_text(lab, hosts))
                for workers in (0, 2):
                    close_connections(hosts)
                    before = logins(hosts)
                    elapsed, peak = audit(lab, site, workers)
                    opened = [after - start for after, start in zip(logins(hosts), before)]
                    rows.append((size, "serial" if not workers else f"-n {workers}", elapsed, peak / 1024,
                                 min(opened), max(opened)))
                    print(rows[-1], flush=True)
            finally:
                hosts.down()
    finally:
        lab.down()
        shutil.rmtree(workspace, ignore_errors=True)

    print("| nodes | mode | wall time (s) | peak RSS of one pytest process (MiB) | SSH logins per node (min-max) |")
    print("|---|---|---|---|---|")
    for size, mode, elapsed, peak, low, high in rows:
        print(f"| {size} | {mode} | {elapsed:.1f} | {peak:.0f} | {low}-{high} |")


if __name__ == "__main__":
    main([int(arg) for arg in sys.argv[1:]] or list(DEFAULT_SIZES))
