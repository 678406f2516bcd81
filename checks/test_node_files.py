"""Node file controls: the gateway account, its configuration tree, the token file, the CA file, pending setups."""

import re

from mesh_compliance.accounts import NOLOGIN_SHELLS, system_range
from mesh_compliance.config_files import linked_item
from mesh_compliance.controls import control
from mesh_compliance.errors import TargetError
from mesh_compliance.node_access import can_read, can_search, tree, unsearchable
from mesh_compliance.redact import register_secret

UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


@control(
    "gateway-account",
    title="Gateway user and group exist as a system account without login",
    severity="medium",
    step="1",
    scope="node",
    rationale="The gateway runs as this account and owns the token file. A login shell or a "
              "regular uid turns a service identity into an account people can log in with.",
)
def test_gateway_account(site, target, evidence):
    user, group = site.gateway.user, site.gateway.group
    limits = system_range(target)
    evidence.expect("user", f"{user} with a system uid (1 to {limits.uid_max}) and a shell in {', '.join(NOLOGIN_SHELLS)}")
    evidence.expect("group", f"{group} with a system gid (1 to {limits.gid_max})")
    evidence.record("system range", limits.source)

    account = target.account(user)
    gid = target.group_id(group)
    evidence.observe("user", f"{user} uid {account.uid} gid {account.gid} home {account.home} shell {account.shell}"
                     if account else "not found")
    evidence.observe("group", f"{group} gid {gid}" if gid is not None else "not found")

    problems = []
    if account is None:
        problems.append(f"user {user} does not exist")
    else:
        if not limits.uid_ok(account.uid):
            problems.append(f"user {user} has uid {account.uid}, outside the system range 1-{limits.uid_max}")
        if account.shell not in NOLOGIN_SHELLS:
            problems.append(f"user {user} has the login shell {account.shell or '(empty, which means /bin/sh)'}")
    if gid is None:
        problems.append(f"group {group} does not exist")
    elif not limits.gid_ok(gid):
        problems.append(f"group {group} has gid {gid}, outside the system range 1-{limits.gid_max}")
    assert not problems, evidence.why(f"the gateway account on {target.name} is not a system account without login: "
                                      + "; ".join(problems))


@control(
    "gateway-config-tree",
    title="Gateway configuration directory belongs to the gateway account, which can reach it",
    severity="high",
    step="2",
    scope="node",
    rationale="The gateway reads its token from this directory as the gateway user; a directory "
              "it cannot search, or files owned by another account, stop the gateway or let others change its files.",
)
def test_gateway_config_tree(site, target, evidence):
    gateway = site.gateway
    directory = gateway.config_dir
    evidence.expect("owner", f"{gateway.user}:{gateway.group} on {directory} and everything in it")
    evidence.expect("searchable by", f"{gateway.user}: / and every directory down to {directory} and below it")

    account, gid = target.account(gateway.user), target.group_id(gateway.group)
    assert account is not None and gid is not None, evidence.why(
        f"the gateway user {gateway.user} or group {gateway.group} does not exist on {target.name}; see control gateway-account")

    state = target.file_state(directory)
    evidence.observe("directory", state.describe())
    assert state.exists, evidence.why(f"configuration directory {directory} does not exist on {target.name}")
    assert state.is_dir, evidence.why(f"{directory} exists on {target.name} but is not a directory")

    entries = tree(target, directory)
    wrong_owner = [f"{entry.path} ({target.user_name(entry.uid)}:{target.group_name(entry.gid)})"
                   for entry in entries if (entry.uid, entry.gid) != (account.uid, gid)]
    inner = [entry.path for entry in entries if entry.kind == "d" and entry.path != directory]
    blocked = unsearchable(target, gateway.user, directory)
    blocked += [path for path in inner if not can_search(target, gateway.user, path)]
    evidence.observe("owned by another account", wrong_owner or "none")
    evidence.observe(f"not searchable by {gateway.user}", blocked or "none")

    problems = []
    if wrong_owner:
        problems.append(f"owned by another account: {', '.join(wrong_owner)}")
    if blocked:
        problems.append(f"{gateway.user} cannot search {', '.join(blocked)}")
    assert not problems, evidence.why(f"configuration directory {directory}: " + "; ".join(problems))


@control(
    "gateway-token-file",
    title="Gateway token file holds one known token, readable by the gateway user only",
    severity="critical",
    step="6",
    scope="node",
    rationale="The unit reads the token as the gateway user. A token file that user cannot read "
              "stops the gateway; one that others can read hands out service:write on the gateway "
              "and the DB service.",
)
def test_gateway_token_file(site, consul, target, evidence):
    gateway = site.gateway
    path = gateway.token_file
    evidence.expect("content", "one ACL token SecretID that Consul knows, optionally followed by one newline")
    evidence.expect("owner", gateway.user)
    evidence.expect("mode", "no group or world access (mode & 0077 == 0)")
    evidence.expect("readable by", gateway.user)

    state = target.file_state(path)
    evidence.observe("file", state.describe())
    assert state.exists, evidence.why(f"token file {path} does not exist on {target.name}")
    assert state.is_file, evidence.why(f"token file {path} is not a regular file")

    problems = _token_access_problems(target, gateway, state, evidence)
    problems += _token_content_problems(target, consul, path, evidence)
    assert not problems, evidence.why(f"token file {path}: " + "; ".join(problems))


def _token_access_problems(target, gateway, state, evidence) -> list[str]:
    problems = []
    account = target.account(gateway.user)
    if account is None:
        return [f"user {gateway.user} does not exist, so nothing reads the file as that user"]
    if state.uid != account.uid:
        problems.append(f"owned by {state.owner}, not {gateway.user}")
    if state.mode & 0o077:
        problems.append(f"mode {state.mode:04o} gives group or world access")

    readable = can_read(target, gateway.user, state.path)
    evidence.observe(f"readable by {gateway.user}", "yes" if readable else "no")
    if not readable:
        blocked = unsearchable(target, gateway.user, _parent(state.path))
        where = f" (it cannot search {', '.join(blocked)})" if blocked else ""
        problems.append(f"{gateway.user} cannot read it{where}")
    return problems


def _token_content_problems(target, consul, path: str, evidence) -> list[str]:
    content = target.read_text(path) or ""
    secret = content.removesuffix("\n")
    if UUID.match(secret):
        register_secret(secret, "Consul token")
    evidence.observe("content", _shape(secret))
    if not UUID.match(secret):
        return [f"it holds {_shape(secret)}, not one token SecretID"]

    answer = consul.with_token(secret).token_self()
    evidence.record("GET /v1/acl/token/self (gateway token)", f"{answer.status} {answer.text.strip()[:200]}")
    if answer.status != 200:
        return ["Consul does not know the secret it holds (deleted or expired)"]
    evidence.observe("token", f"AccessorID {answer.body.get('AccessorID')}")
    return []


def _shape(secret: str) -> str:
    if not secret.strip():
        return "nothing (empty)" if not secret else "only white space"
    if secret.strip() == "null":
        return "the text null"
    if "\n" in secret:
        return f"{secret.count(chr(10)) + 1} lines"
    if UUID.match(secret):
        return "one UUID-shaped secret"
    return f"{len(secret)} characters, not a UUID"


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0] or "/"


@control(
    "gateway-tls-options",
    title="TLS options of the DB service in the gateway entry can work",
    severity="medium",
    step="9-10",
    scope="node",
    rationale="With CAFile the gateway opens TLS toward the database and must read the CA file as "
              "the gateway user. PostgreSQL starts TLS inside its own protocol after an SSLRequest, "
              "so TLS opened by the gateway does not fit it; SNI without CAFile does nothing.",
)
def test_gateway_tls_options(site, consul, target, evidence):
    name, service = site.gateway.service, site.external_service.name
    evidence.expect("CAFile", f"unset, or a file on {target.name} that {site.gateway.user} can read")
    evidence.expect("SNI", "unset, or set together with CAFile")

    entry = consul.config_entry("terminating-gateway", name)
    item = linked_item(entry, service)
    evidence.observe("entry", f"terminating-gateway/{name}" if entry else "not found")
    evidence.record(f"GET /v1/config/terminating-gateway/{name}", {"Services": (entry or {}).get("Services")})
    if item is None:
        evidence.observe("linked service", f"{service} is not linked, so no TLS option applies")
        return

    ca_file, sni = item.get("CAFile") or "", item.get("SNI") or ""
    evidence.observe("CAFile", ca_file or "unset")
    evidence.observe("SNI", sni or "unset")
    if not ca_file:
        if sni:
            evidence.warn(f"SNI {sni!r} is set for {service} without CAFile, so the gateway opens no TLS and SNI has no effect")
        return

    state = target.file_state(ca_file)
    evidence.observe("CA file", state.describe())
    assert state.exists, evidence.why(f"CAFile {ca_file} of {service} does not exist on {target.name}")
    assert state.is_file, evidence.why(f"CAFile {ca_file} of {service} is not a regular file on {target.name}")
    readable = can_read(target, site.gateway.user, ca_file)
    evidence.observe(f"CA file readable by {site.gateway.user}", "yes" if readable else "no")
    assert readable, evidence.why(f"{site.gateway.user} cannot read CAFile {ca_file} of {service}")

    evidence.warn(
        f"the gateway opens TLS toward {service}, a PostgreSQL service (CAFile {ca_file}): PostgreSQL negotiates TLS "
        "inside its own protocol after an SSLRequest, so the gateway's TLS handshake does not fit it; "
        "let the client negotiate TLS end to end instead"
    )


@control(
    "pending-setups",
    title="No pending setup script is left",
    severity="medium",
    step="14",
    scope="node",
    rationale="Carbonio packages finish their setup in scripts that pending-setups runs with the "
              "cluster credential; a script still waiting means a service is installed but not set up.",
    roles=("*",),
)
def test_pending_setups(site, target, evidence):
    directory = site.node.pending_setups_dir
    evidence.expect("pending scripts", f"no *.sh file directly in {directory} (done/ does not count)")

    state = target.file_state(directory)
    evidence.observe("directory", state.describe())
    if not state.exists:
        evidence.record("pending-setups", f"{directory} does not exist: pending-setups is not installed")
        return
    assert state.is_dir, evidence.why(f"{directory} exists but is not a directory")

    pending = _pending_scripts(target, directory)
    evidence.observe("pending scripts", pending or "none")
    assert not pending, evidence.why(f"setup scripts still pending in {directory}: {', '.join(pending)}; "
                                     "run pending-setups -a as root")


def _pending_scripts(target, directory: str) -> list[str]:
    # pending-setups runs each *.sh regular file at depth 1. -xtype f also
    # counts a symbolic link to a regular file, which bash runs the same way.
    # NOTE: under --root, find resolves an absolute link target on the
    # runner, not inside the root, so such a link may be judged wrongly.
    local = target.path(directory)
    result = target.run("find", local, "-mindepth", "1", "-maxdepth", "1", "-name", "*.sh", "-xtype", "f", "-printf", r"%f\0")
    if result.rc != 0:
        raise TargetError(f"cannot list {local} on {target.name}: {result.stderr.strip()}")
    return sorted(filter(None, result.stdout.split("\0")))
