"""Start test hosts reachable over real SSH, each in its own network and mount namespace.

Each host is a network namespace joined to this machine by a veth pair on a
private /30. Its processes also run in a private mount and UTS namespace whose
root is an overlay of this machine's root. Reads see the machine's tools and
files, and every write (a dpkg database change, a log line) lands in the host's
own upper directory. Debian's OpenSSH server runs inside on the host's address
and accepts root with one test key only. Nothing outside the hosts' /30
networks is contacted.

Needs root, ``ip netns``, ``unshare``, overlayfs and /usr/sbin/sshd.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from mesh_compliance.lab.commands import run
from mesh_compliance.lab.errors import LabError

logger = logging.getLogger("mesh_compliance.lab")

NAME_PREFIX = "meshlab-"
VETH_PREFIX = "mlab"
SSHD = "/usr/sbin/sshd"
SSH_PORT = 22

# Candidate ranges for the hosts' /30 networks. The first one that no route or
# address of this machine overlaps, other than meshlab's own veths, is used.
ADDRESS_RANGES = ("10.231.0.0/16", "10.232.0.0/16", "10.233.0.0/16")

# Inside a host: where its sshd finds its config, keys and authorized key.
HOST_SSH_DIR = "/etc/ssh/meshlab"

START_TIMEOUT_SECONDS = 15
STOP_TIMEOUT_SECONDS = 10
CONTROL_PERSIST_SECONDS = 60
CONNECT_TIMEOUT_SECONDS = 5

# A Unix socket path has at most 107 bytes on Linux. ControlPath's %C adds a
# slash and 40 hex digits, and ssh binds the master socket first under a name
# with 17 more characters before renaming it.
MAX_CONTROL_DIR_LENGTH = 48


@dataclass
class TestHost:
    """One test host: its namespace, addresses, files and running sshd."""

    __test__ = False

    name: str
    index: int
    address: str
    peer_address: str
    veth: str
    directory: Path
    ssh_config: Path
    process: subprocess.Popen | AdoptedProcess | None = None

    @property
    def connection(self) -> str:
        """Return the testinfra host spec, to be passed with ``ssh_config``."""
        return f"ssh://root@{self.address}"

    @property
    def root(self) -> Path:
        """Return the host's root (the overlay's merged view) as seen from this machine.

        The overlay is mounted in the host's private mount namespace only, so
        the path goes through sshd's /proc root link and exists while the host runs.
        """
        if self.process is None or self.process.poll() is not None:
            raise LabError(f"test host {self.name} is stopped, so its root is not mounted; start it, or read {self.upper}")
        return Path(f"/proc/{self.process.pid}/root")

    @property
    def upper(self) -> Path:
        """Return the overlay's upper directory, which receives every write of the host."""
        return self.directory / "upper"

    @property
    def work(self) -> Path:
        return self.directory / "work"

    @property
    def merged(self) -> Path:
        return self.directory / "root"

    @property
    def sshd_log(self) -> Path:
        return self.directory / "sshd.log"

    @property
    def network_namespace(self) -> Path:
        return Path("/run/netns") / self.name

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class AdoptedProcess:
    """A host's sshd started by another process: poll and wait by pid, as with a Popen."""

    def __init__(self, pid: int):
        self.pid = pid

    def poll(self) -> int | None:
        try:
            state = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return 0
        return 0 if state in ("Z", "X") else None

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout)
            time.sleep(0.05)
        return 0


@dataclass
class TestHosts:
    """A set of test hosts under one directory; build it with ``TestHosts.up``."""

    __test__ = False

    directory: Path
    ssh_config: Path
    identity: Path
    control_dir: Path
    hosts: list[TestHost] = field(default_factory=list)
    lab_id: str = ""

    @classmethod
    def up(cls, directory: Path | str, count: int, ssh_key_dir: Path | str | None = None) -> TestHosts:
        """Start ``count`` hosts under ``directory``, which must not exist yet.

        On any failure everything already made is removed and LabError is
        raised. ``ssh_key_dir`` contains the client key ``id_ed25519``. It
        defaults to ``directory/client``, and a key is generated there when missing.
        """
        if count < 1:
            raise LabError(f"invalid host count {count}; start at least one test host")
        _require_tools()

        directory = Path(directory).resolve()
        directory.mkdir(parents=True, exist_ok=False)
        lab_id = secrets.token_hex(3)
        key_dir = Path(ssh_key_dir).resolve() if ssh_key_dir else directory / "client"
        fleet = cls(
            directory=directory,
            ssh_config=directory / "ssh_config",
            identity=key_dir / "id_ed25519",
            control_dir=_control_dir(directory, lab_id),
            lab_id=lab_id,
        )

        try:
            fleet._create(count)
        except BaseException:
            try:
                fleet.down()
            except LabError as cleanup_error:
                logger.error("removing half-started test hosts in %s failed: %s", directory, cleanup_error)
            raise
        return fleet

    def record(self) -> dict:
        """Return what ``adopt`` needs to manage the running hosts from another process."""
        return {
            "directory": str(self.directory),
            "ssh_config": str(self.ssh_config),
            "identity": str(self.identity),
            "control_dir": str(self.control_dir),
            "lab_id": self.lab_id,
            "hosts": [
                {"name": host.name, "index": host.index, "address": host.address, "peer_address": host.peer_address,
                 "veth": host.veth, "directory": str(host.directory),
                 "pid": host.process.pid if host.running else None}
                for host in self.hosts
            ],
        }

    @classmethod
    def adopt(cls, record: dict) -> TestHosts:
        """Return the hosts that ``record`` describes, started earlier by another process."""
        fleet = cls(
            directory=Path(record["directory"]),
            ssh_config=Path(record["ssh_config"]),
            identity=Path(record["identity"]),
            control_dir=Path(record["control_dir"]),
            lab_id=record["lab_id"],
        )
        for item in record["hosts"]:
            host = TestHost(item["name"], item["index"], item["address"], item["peer_address"], item["veth"],
                            Path(item["directory"]), fleet.ssh_config)
            host.process = AdoptedProcess(item["pid"]) if item["pid"] else None
            fleet.hosts.append(host)
        return fleet

    def __getitem__(self, name: str) -> TestHost:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)

    def __iter__(self):
        return iter(self.hosts)

    def __len__(self) -> int:
        return len(self.hosts)

    def _create(self, count: int) -> None:
        self.identity.parent.mkdir(parents=True, exist_ok=True)
        if not self.identity.exists():
            _generate_key(self.identity, "meshlab test client")
        (self.directory / "known_hosts").touch(mode=0o600)

        for index in range(1, count + 1):
            host = self._add_host(index)
            _write_host_ssh_files(host, self.identity.with_suffix(".pub"))
        _write_client_config(self)

        for host in self.hosts:
            self.start(host.name)

    def _add_host(self, index: int) -> TestHost:
        name = f"{NAME_PREFIX}{self.lab_id}-h{index}"
        host_dir = self.directory / "hosts" / f"h{index}"
        host_dir.mkdir(parents=True)
        host = TestHost(
            name=name,
            index=index,
            address="",
            peer_address="",
            veth=f"{VETH_PREFIX}{self.lab_id}-{index}",
            directory=host_dir,
            ssh_config=self.ssh_config,
        )
        self.hosts.append(host)

        run(["ip", "netns", "add", name])
        _connect_host(host)
        for path in (host.upper, host.work, host.merged):
            path.mkdir()
        return host

    def start(self, name: str) -> None:
        """Bring the host's link up and start its sshd in fresh mount and UTS namespaces."""
        host = self[name]
        if host.running:
            return

        run(["ip", "-n", host.name, "link", "set", "eth0", "up"])
        log = host.sshd_log.open("ab")
        try:
            host.process = subprocess.Popen(
                _host_command(host),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        finally:
            log.close()
        logger.debug("test host %s: sshd pid %d on %s", host.name, host.process.pid, host.address)
        _wait_for_ssh_port(host)

    def stop(self, name: str) -> None:
        """Kill every process of the host and take its link down, as if it were powered off.

        The overlay's upper directory is kept, so ``start`` brings the host back
        with the files and packages it had.
        """
        host = self[name]
        _kill_namespace_processes(host)
        if host.process is not None:
            try:
                host.process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                logger.warning("test host %s: sshd pid %d did not exit", host.name, host.process.pid)
        host.process = None
        if host.network_namespace.exists():
            run(["ip", "-n", host.name, "link", "set", "eth0", "down"], check=False)

    def down(self) -> None:
        """Stop every host, delete its namespace and veth, and remove the directory.

        A host whose processes cannot be killed does not stop the removal of
        the others; the first such error is raised at the end.
        """
        for host in self.hosts:
            _close_control_master(self, host)

        errors = []
        for host in self.hosts:
            try:
                self.stop(host.name)
            except LabError as error:
                logger.error("stopping test host %s failed: %s", host.name, error)
                errors.append(error)
            _remove_host_network(host)
        self.hosts.clear()

        shutil.rmtree(self.control_dir, ignore_errors=True)
        shutil.rmtree(self.directory, ignore_errors=True)
        if errors:
            raise errors[0]


def _require_tools() -> None:
    if os.geteuid() != 0:
        raise LabError("test hosts need root: network namespaces, mounts and chroot are root-only")
    for tool in ("ip", "unshare", "nsenter", "chroot", "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            raise LabError(f"command not found: {tool}; install it (Debian: iproute2, util-linux, openssh-client)")
    if not os.access(SSHD, os.X_OK):
        raise LabError(f"{SSHD} not found; install Debian's openssh-server (scripts/bootstrap does)")


def _control_dir(directory: Path, lab_id: str) -> Path:
    """Return a directory for ControlMaster sockets whose paths stay within the socket length limit."""
    preferred = directory / "cm"
    if len(str(preferred)) <= MAX_CONTROL_DIR_LENGTH:
        preferred.mkdir(mode=0o700)
        return preferred
    return Path(tempfile.mkdtemp(prefix=f"{NAME_PREFIX}{lab_id}-cm-"))


def _generate_key(path: Path, comment: str) -> None:
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])


# Addresses

def _connect_host(host: TestHost) -> None:
    """Create the veth pair and give both ends addresses from a /30 no other interface uses.

    Choosing and assigning happen under a lock on /run/netns, so test workers
    running in parallel never pick the same /30.
    """
    with _address_lock():
        network = _free_network()
        peer_address, address = (str(a) for a in list(network.hosts())[:2])
        run(["ip", "link", "add", host.veth, "type", "veth", "peer", "name", "eth0", "netns", host.name])
        run(["ip", "addr", "add", f"{peer_address}/30", "dev", host.veth])
    host.address = address
    host.peer_address = peer_address

    run(["ip", "link", "set", host.veth, "up"])
    run(["ip", "-n", host.name, "addr", "add", f"{address}/30", "dev", "eth0"])
    run(["ip", "-n", host.name, "link", "set", "lo", "up"])
    run(["ip", "-n", host.name, "link", "set", "eth0", "up"])


@contextlib.contextmanager
def _address_lock():
    """Hold an exclusive flock on /run/netns, which ``ip netns add`` has created."""
    descriptor = os.open("/run/netns", os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def _free_network() -> ipaddress.IPv4Network:
    used_by_others, used_by_hosts = _used_networks()
    for candidate in ADDRESS_RANGES:
        address_range = ipaddress.ip_network(candidate)
        if any(address_range.overlaps(network) for network in used_by_others):
            logger.debug("address range %s is in use on this machine; trying the next one", candidate)
            continue
        for network in address_range.subnets(new_prefix=30):
            if not any(network.overlaps(used) for used in used_by_hosts):
                return network
    raise LabError(f"no free /30 network in {', '.join(ADDRESS_RANGES)}; run TestHosts.down on unused hosts")


def _used_networks() -> tuple[list[ipaddress.IPv4Network], list[ipaddress.IPv4Network]]:
    """Return the IPv4 networks of this machine's routes and addresses: (others, meshlab veths)."""
    others: list[ipaddress.IPv4Network] = []
    hosts: list[ipaddress.IPv4Network] = []

    for interface in json.loads(run(["ip", "-j", "-4", "addr", "show"]).stdout or "[]"):
        for info in interface.get("addr_info", []):
            network = ipaddress.ip_network(f"{info['local']}/{info['prefixlen']}", strict=False)
            (hosts if interface["ifname"].startswith(VETH_PREFIX) else others).append(network)

    for route in json.loads(run(["ip", "-j", "-4", "route", "show", "table", "all"]).stdout or "[]"):
        destination = route.get("dst", "default")
        if destination == "default" or route.get("dev", "").startswith(VETH_PREFIX):
            continue
        try:
            others.append(ipaddress.ip_network(destination, strict=False))
        except ValueError:
            continue
    return others, hosts


# SSH files

def _write_host_ssh_files(host: TestHost, client_public_key: Path) -> None:
    """Write sshd's config, host key and authorized key into the host's upper directory."""
    ssh_dir = host.upper / HOST_SSH_DIR.lstrip("/")
    ssh_dir.mkdir(parents=True, mode=0o755)
    os.chmod(ssh_dir, 0o755)

    _generate_key(ssh_dir / "ssh_host_ed25519_key", f"{host.name} host key")
    authorized = ssh_dir / "authorized_keys"
    authorized.write_text(client_public_key.read_text(encoding="utf-8"), encoding="utf-8")
    os.chmod(authorized, 0o600)

    # bash reads root's .bashrc for every command sshd runs, and this
    # machine's may load slow interactive setup (pyenv here takes about 0.5 s).
    # The host gets an empty one, so commands cost what they would on a server.
    home = host.upper / "root"
    home.mkdir(parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    (home / ".bashrc").write_text("", encoding="utf-8")

    (ssh_dir / "sshd_config").write_text(
        f"ListenAddress {host.address}:{SSH_PORT}\n"
        f"HostKey {HOST_SSH_DIR}/ssh_host_ed25519_key\n"
        f"AuthorizedKeysFile {HOST_SSH_DIR}/authorized_keys\n"
        f"PidFile none\n"
        "PermitRootLogin prohibit-password\n"
        "PubkeyAuthentication yes\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "UsePAM no\n"
        "UseDNS no\n"
        "LogLevel VERBOSE\n"
        "MaxStartups 50\n"
        "MaxSessions 50\n"
        "Subsystem sftp internal-sftp\n",
        encoding="utf-8",
    )


def _write_client_config(fleet: TestHosts) -> None:
    addresses = " ".join(host.address for host in fleet.hosts)
    fleet.ssh_config.write_text(
        f"Host {addresses}\n"
        "    User root\n"
        f"    Port {SSH_PORT}\n"
        f"    IdentityFile {fleet.identity}\n"
        "    IdentitiesOnly yes\n"
        f"    UserKnownHostsFile {fleet.directory / 'known_hosts'}\n"
        "    GlobalKnownHostsFile /dev/null\n"
        "    StrictHostKeyChecking accept-new\n"
        "    BatchMode yes\n"
        "    PasswordAuthentication no\n"
        f"    ConnectTimeout {CONNECT_TIMEOUT_SECONDS}\n"
        "    ControlMaster auto\n"
        f"    ControlPath {fleet.control_dir}/%C\n"
        f"    ControlPersist {CONTROL_PERSIST_SECONDS}\n",
        encoding="utf-8",
    )


# Host processes

def _host_command(host: TestHost) -> list[str]:
    """Return the command that runs sshd inside the host's namespaces and overlay root.

    The overlay, /proc, /dev and /run mounts exist only in the private mount
    namespace, so the kernel removes them when the host's last process exits.
    """
    merged = str(host.merged)
    script = (
        "set -e\n"
        f"mount -t overlay overlay -o lowerdir=/,upperdir={host.upper},workdir={host.work} {merged}\n"
        f"mount -t proc proc {merged}/proc\n"
        f"mount --rbind /dev {merged}/dev\n"
        f"mount -t tmpfs -o mode=0755 tmpfs {merged}/run\n"
        f"mkdir -p {merged}/run/sshd\n"
        f"hostname {host.name}\n"
        f"exec chroot {merged} {SSHD} -D -e -f {HOST_SSH_DIR}/sshd_config\n"
    )
    return [
        "nsenter", f"--net={host.network_namespace}", "--",
        "unshare", "--mount", "--uts", "--propagation", "private", "--",
        "sh", "-c", script,
    ]


def _wait_for_ssh_port(host: TestHost) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if host.process is None or host.process.poll() is not None:
            raise LabError(f"sshd of test host {host.name} exited; see {host.sshd_log}: {_last_line(host.sshd_log)}")
        try:
            with socket.create_connection((host.address, SSH_PORT), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise LabError(f"sshd of test host {host.name} did not listen on {host.address}:{SSH_PORT} within {START_TIMEOUT_SECONDS} s")


def _last_line(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return lines[-1] if lines else "empty log"


def namespace_pids(host: TestHost) -> list[int]:
    """Return the pids of every process running in the host's network namespace."""
    try:
        target = host.network_namespace.stat()
    except OSError:
        return []

    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            link = (entry / "ns" / "net").stat()
        except OSError:
            continue
        if (link.st_dev, link.st_ino) == (target.st_dev, target.st_ino):
            pids.append(int(entry.name))
    return pids


def _kill_namespace_processes(host: TestHost) -> None:
    """Send SIGTERM, then SIGKILL, to the host's processes: its sshd and every session under it."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        for pid in namespace_pids(host):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS / 2
        while time.monotonic() < deadline:
            if host.process is not None:
                host.process.poll()
            if not namespace_pids(host):
                return
            time.sleep(0.05)
    raise LabError(f"processes {namespace_pids(host)} of test host {host.name} survived SIGKILL")


def _close_control_master(fleet: TestHosts, host: TestHost) -> None:
    """Ask the SSH control master for the host to exit, so no client process outlives the hosts."""
    if not host.address or not fleet.ssh_config.exists():
        return
    run(["ssh", "-F", str(fleet.ssh_config), "-O", "exit", host.address], check=False, timeout=10)


def _remove_host_network(host: TestHost) -> None:
    run(["ip", "link", "delete", host.veth], check=False)
    if host.network_namespace.exists():
        run(["ip", "netns", "delete", host.name])
