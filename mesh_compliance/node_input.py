"""Run a command on a node with data on its standard input.

testinfra's backends take no input, and a file's content on a command line
would show every secret in it to ``ps`` on both ends and in the debug log.
This module opens its own channel per backend and sends the data on stdin:
- ``local``: a subprocess;
- ``ssh`` and ``safe-ssh``: the ``ssh`` client with the options testinfra
  gives it, so a ControlMaster socket that testinfra opened is reused;
- ``paramiko``: a new session on the paramiko client testinfra holds.
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass

from mesh_compliance.errors import FixError

TIMEOUT_SECONDS = 120


@dataclass(frozen=True)
class InputResult:
    rc: int
    stdout: str
    stderr: str


def run_with_input(host, command: str, data: bytes) -> InputResult:
    """Run the shell ``command`` on testinfra ``host`` with ``data`` on its stdin."""
    backend = host.backend
    command = backend.get_command(command)
    if backend.NAME == "local":
        return _run_process(["/bin/sh", "-c", command], data)
    if backend.NAME in ("ssh", "safe-ssh"):
        return _run_process([*ssh_argv(backend), backend.host.name, command], data)
    if backend.NAME == "paramiko":
        return _run_paramiko(backend, command, data)
    raise FixError(f"writing files needs a local://, ssh:// or paramiko:// connection; "
                   f"{backend.NAME}:// cannot send a file's content on stdin")


def ssh_argv(backend) -> list[str]:
    """Return the ssh client command testinfra's ssh backend would build, without the host and command."""
    if backend.host.password:
        raise FixError(f"writing files over SSH to {backend.host.name} needs key authentication; "
                       "a password in the connection string would be passed on a command line")

    extra = backend.ssh_extra_args or ""
    argv = ["ssh", *shlex.split(extra)]
    if backend.ssh_config:
        argv += ["-F", backend.ssh_config]
    if backend.host.user:
        argv += ["-o", f"User={backend.host.user}"]
    if backend.host.port:
        argv += ["-o", f"Port={backend.host.port}"]
    if backend.ssh_identity_file:
        argv += ["-i", backend.ssh_identity_file]
    if "connecttimeout" not in extra.lower():
        argv += ["-o", f"ConnectTimeout={backend.timeout}"]
    if backend.controlpersist and "controlmaster" not in extra.lower():
        argv += ["-o", "ControlMaster=auto", "-o", f"ControlPersist={backend.controlpersist}s"]
        if backend.controlpath and "controlpath" not in extra.lower():
            argv += ["-o", f"ControlPath={backend.controlpath}"]
    return argv


def _run_process(argv: list[str], data: bytes) -> InputResult:
    try:
        done = subprocess.run(argv, input=data, capture_output=True, timeout=TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired as exc:
        raise FixError(f"{argv[0]} timed out after {TIMEOUT_SECONDS} s") from exc
    return InputResult(done.returncode, _text(done.stdout), _text(done.stderr))


def _run_paramiko(backend, command: str, data: bytes) -> InputResult:
    channel = backend.client.get_transport().open_session()
    try:
        channel.settimeout(TIMEOUT_SECONDS)
        channel.exec_command(command)
        channel.sendall(data)
        channel.shutdown_write()
        stdout = channel.makefile("rb").read()
        stderr = channel.makefile_stderr("rb").read()
        rc = channel.recv_exit_status()
    finally:
        channel.close()
    return InputResult(rc, _text(stdout), _text(stderr))


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")
