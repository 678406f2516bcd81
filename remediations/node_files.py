"""Fixers for the gateway account, its configuration tree, the token file's access and the CA file.

Every change goes through the node's own tools (useradd, usermod, groupadd,
chown, chmod), pointed at the root directory under --root, and ids come from
the node's own account files.
"""

from __future__ import annotations

import re

from mesh_compliance.accounts import NOLOGIN_SHELLS, nologin_shell, system_range
from mesh_compliance.config_files import linked_item
from mesh_compliance.errors import FixError
from mesh_compliance.fixing import FixContext
from mesh_compliance.node_access import ancestors, can_read, can_search, tree, unsearchable
from mesh_compliance.target import Target

UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
TREE_DIRECTORY_MODE = 0o750
TOKEN_FILE_MODE = 0o600


# -- gateway-account -----------------------------------------------------------

def fix_account(ctx: FixContext) -> None:
    """Create the group and the system user, or give an existing user a no-login shell.

    An account is never deleted, and a uid or gid is never changed: files
    elsewhere on the node may belong to it.
    """
    target = ctx.require_target()
    user, group = ctx.site.gateway.user, ctx.site.gateway.group
    limits = system_range(target)
    root = (f"--root={target.root}",) if target.root else ()

    gid = target.group_id(group)
    if gid is None:
        _run(ctx, "groupadd", *root, "--system", group)
        ctx.changed(f"group {group}", "created", "system group")
    elif not limits.gid_ok(gid):
        raise FixError(f"group {group} has gid {gid}, outside the system range 1-{limits.gid_max}; "
                       "change it by hand, since files elsewhere may belong to it")

    account = target.account(user)
    if account is None:
        shell = nologin_shell(target)
        _run(ctx, "useradd", *root, "--system", "--no-create-home", "--shell", shell, "--gid", group, user)
        ctx.changed(f"user {user}", "created", f"system account in group {group}, no home directory, shell {shell}")
        return

    if account.shell not in NOLOGIN_SHELLS:
        shell = nologin_shell(target)
        _run(ctx, "usermod", *root, "--shell", shell, user)
        ctx.changed(f"user {user}", "changed shell", f"{account.shell or '(empty)'} to {shell}")
    if not limits.uid_ok(account.uid):
        raise FixError(f"user {user} has uid {account.uid}, outside the system range 1-{limits.uid_max}; "
                       "change it by hand, since files elsewhere may belong to it (the account is never deleted)")


# -- gateway-config-tree ---------------------------------------------------------

def fix_config_tree(ctx: FixContext) -> None:
    """Give the configuration tree to the gateway account and let it search every directory on the way."""
    target = ctx.require_target()
    gateway = ctx.site.gateway
    uid, gid = ctx.account_ids(gateway.user, gateway.group)
    directory = gateway.config_dir

    if not target.file_state(directory).exists:
        _run(ctx, "mkdir", "-p", "-m", f"{TREE_DIRECTORY_MODE:o}", target.path(directory))
        ctx.changed(f"directory {directory}", "created", f"mode {TREE_DIRECTORY_MODE:04o}")

    for entry in tree(target, directory):
        if (entry.uid, entry.gid) != (uid, gid):
            _run(ctx, "chown", "-h", f"{uid}:{gid}", target.path(entry.path))
            ctx.changed(entry.path, "changed owner", f"{target.user_name(entry.uid)}:{target.group_name(entry.gid)} "
                                                     f"to {gateway.user}:{gateway.group}")

    make_searchable(ctx, target, gateway.user, directory)
    for entry in tree(target, directory):
        if entry.kind == "d" and entry.path != directory and not can_search(target, gateway.user, entry.path):
            _chmod(ctx, target, entry.path, f"{TREE_DIRECTORY_MODE:o}", f"mode {entry.mode:04o} to {TREE_DIRECTORY_MODE:04o}")


def make_searchable(ctx: FixContext, target: Target, user: str, directory: str) -> None:
    """Let ``user`` search "/" and every directory down to ``directory``, top down.

    A directory of the configuration tree is given to the gateway account,
    then set to mode 0750 if that is not enough. A directory above the tree
    gets only the search bit of the class that applies to the user (owner,
    group or other), so no account gains the right to list it.
    """
    gateway = ctx.site.gateway
    for path in ancestors(directory):
        if can_search(target, user, path):
            continue
        if _in_tree(path, gateway.config_dir):
            _give_to_gateway(ctx, target, path)
            if not can_search(target, user, path):
                state = target.file_state(path)
                _chmod(ctx, target, path, f"{TREE_DIRECTORY_MODE:o}", f"mode {state.mode:04o} to {TREE_DIRECTORY_MODE:04o}")
        else:
            state = target.file_state(path)
            bit = _search_bit(target, user, state)
            _chmod(ctx, target, path, bit, f"mode {state.mode:04o}, added {bit} so {user} can search it")
        if not can_search(target, user, path):
            raise FixError(f"{user} still cannot search {path} after chmod; an ACL or a security module may deny it")


def _in_tree(path: str, config_dir: str) -> bool:
    return path == config_dir or path.startswith(config_dir.rstrip("/") + "/")


def _give_to_gateway(ctx: FixContext, target: Target, path: str) -> None:
    gateway = ctx.site.gateway
    uid, gid = ctx.account_ids(gateway.user, gateway.group)
    state = target.file_state(path)
    if (state.uid, state.gid) != (uid, gid):
        _run(ctx, "chown", "-h", f"{uid}:{gid}", target.path(path))
        ctx.changed(path, "changed owner", f"{state.owner}:{state.group} to {gateway.user}:{gateway.group}")


def _search_bit(target: Target, user: str, state) -> str:
    account = target.account(user)
    if state.uid == account.uid:
        return "u+x"
    if state.gid in {account.gid, *target.supplementary_groups(user)}:
        return "g+x"
    return "o+x"


# -- gateway-token-file ------------------------------------------------------------

def fix_token_file(ctx: FixContext) -> None:
    """Give the token file to the gateway account with mode 0600; the content is never changed.

    The acl-token fixer owns the content: it creates a token and writes the file.
    """
    target = ctx.require_target()
    gateway = ctx.site.gateway
    path = gateway.token_file
    state = target.file_state(path)
    if not state.exists:
        raise FixError(f"token file {path} does not exist; the fixer of control acl-token creates a token and writes it")
    if not state.is_file:
        raise FixError(f"{path} is not a regular file; move it aside by hand, then the fixer of control acl-token can write the token")

    uid, gid = ctx.account_ids(gateway.user, gateway.group)
    if (state.uid, state.gid) != (uid, gid):
        _run(ctx, "chown", f"{uid}:{gid}", target.path(path))
        ctx.changed(f"token file {path}", "changed owner", f"{state.owner}:{state.group} to {gateway.user}:{gateway.group}")
    if state.mode & 0o077 or not state.mode & 0o400:
        _chmod(ctx, target, path, f"{TOKEN_FILE_MODE:o}", f"mode {state.mode:04o} to {TOKEN_FILE_MODE:04o}")
    make_searchable(ctx, target, gateway.user, path.rsplit("/", 1)[0] or "/")

    content = (target.read_text(path) or "").removesuffix("\n")
    if not UUID.match(content):
        raise FixError(f"token file {path} does not hold one token SecretID; this fixer never changes the content, "
                       "the fixer of control acl-token writes a new token")


# -- gateway-tls-options -------------------------------------------------------------

def fix_ca_file(ctx: FixContext) -> None:
    """Let the gateway user read the entry's CA file: group to the gateway group, add g+r.

    CAFile is never removed from the entry: that would change how the gateway
    encrypts traffic to the database, which only the operator may decide.
    """
    target = ctx.require_target()
    gateway = ctx.site.gateway
    entry = ctx.consul.config_entry("terminating-gateway", gateway.service)
    item = linked_item(entry, ctx.site.external_service.name)
    ca_file = (item or {}).get("CAFile")
    if not ca_file:
        return

    state = target.file_state(ca_file)
    if not state.exists or not state.is_file:
        raise FixError(f"CAFile {ca_file} is not a regular file on {target.name}; install the CA bundle there "
                       "(this fixer never removes CAFile from the entry)")
    if can_read(target, gateway.user, ca_file):
        return

    _, gid = ctx.account_ids(gateway.user, gateway.group)
    if state.gid != gid:
        _run(ctx, "chgrp", str(gid), target.path(ca_file))
        ctx.changed(f"CA file {ca_file}", "changed group", f"{state.group} to {gateway.group}")
    if not state.mode & 0o040:
        _chmod(ctx, target, ca_file, "g+r", f"mode {state.mode:04o}, added g+r")
    if state.owner == gateway.user and not state.mode & 0o400:
        # The owner class applies to the owner, so the group bit alone would not help.
        _chmod(ctx, target, ca_file, "u+r", f"mode {state.mode:04o}, added u+r")

    if not ctx.dry_run and not can_read(target, gateway.user, ca_file):
        blocked = unsearchable(target, gateway.user, ca_file.rsplit("/", 1)[0] or "/")
        where = f": it cannot search {', '.join(blocked)}" if blocked else ""
        raise FixError(f"{gateway.user} still cannot read CAFile {ca_file}{where}; this fixer changes only the file's group and read bits")


# -- helpers ---------------------------------------------------------------------------



def _chmod(ctx: FixContext, target: Target, node_path: str, mode: str, detail: str) -> None:
    _run(ctx, "chmod", mode, target.path(node_path))
    ctx.changed(node_path, "changed mode", detail)


def _run(ctx: FixContext, *argv: str) -> None:
    ctx.run(*argv)
