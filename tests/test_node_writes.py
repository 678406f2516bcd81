"""File changes through a node's connection: local, ssh:// and paramiko:// to a test host."""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

import pytest
import testinfra

from mesh_compliance import node_writes
from mesh_compliance.errors import FixError, TargetError
from mesh_compliance.target import Target
from tests.test_fleet_hosts import _SKIP_REASON

SECRET = "5f1c0a4e-token-" + uuid.uuid4().hex
CONTENT = f"first line\ntoken = \"{SECRET}\"\nquote ' and $HOME stay literal\nno newline at the end: é"
NOBODY = 65534


@pytest.fixture(scope="module")
def test_hosts(tmp_path_factory):
    if _SKIP_REASON is not None:
        pytest.skip(_SKIP_REASON)
    from mesh_compliance.lab.fleet import TestHosts

    hosts = TestHosts.up(tmp_path_factory.mktemp("writes") / "hosts", 1)
    yield hosts
    hosts.down()


class Node:
    """A Target plus the way this test reads what landed on it."""

    def __init__(self, target: Target, directory: str, seen_at: Path):
        self.target = target
        self.directory = directory
        self.seen_at = seen_at

    def seen(self, path: str) -> Path:
        """Return where a node path can be read from this machine."""
        return self.seen_at / path.lstrip("/")


@pytest.fixture(params=["local", "ssh", "paramiko"])
def node(request, tmp_path):
    if request.param == "local":
        directory = tmp_path / "etc dir"
        directory.mkdir()
        yield Node(Target(testinfra.get_host("local://")), str(directory), Path("/"))
        return

    if os.geteuid() != 0:
        pytest.skip("test hosts need root")
    hosts = request.getfixturevalue("test_hosts")
    host = hosts.hosts[0]
    connection = host.connection.replace("ssh://", f"{request.param}://")
    remote = Target(testinfra.get_host(connection, ssh_config=str(hosts.ssh_config)), label=request.param)
    directory = f"/srv/writes {uuid.uuid4().hex[:8]}"
    remote.run("mkdir", "-p", directory)
    yield Node(remote, directory, host.root)


def test_replace_writes_content_owner_and_mode(node):
    path = f"{node.directory}/token"

    node_writes.replace(node.target, path, CONTENT, NOBODY, NOBODY, 0o640)

    written = node.seen(path)
    assert written.read_text(encoding="utf-8") == CONTENT
    assert written.stat().st_uid == NOBODY
    assert written.stat().st_gid == NOBODY
    assert written.stat().st_mode & 0o7777 == 0o640


def test_replace_keeps_content_off_the_log(node, caplog):
    caplog.set_level(logging.DEBUG, logger="mesh_compliance")

    node_writes.replace(node.target, f"{node.directory}/token", CONTENT, 0, 0, 0o600)

    assert "bytes on stdin" in caplog.text
    assert SECRET not in caplog.text


def test_replace_leaves_no_temporary_file(node):
    node_writes.replace(node.target, f"{node.directory}/token", CONTENT, 0, 0, 0o600)
    node_writes.replace(node.target, f"{node.directory}/token", "second\n", 0, 0, 0o600)

    assert sorted(entry.name for entry in node.seen(node.directory).iterdir()) == ["token"]
    assert node.seen(f"{node.directory}/token").read_text(encoding="utf-8") == "second\n"


def test_replace_in_missing_directory_names_it(node):
    path = f"{node.directory}/missing/token"

    with pytest.raises(FixError, match="directory of .*/missing/token does not exist"):
        node_writes.replace(node.target, path, CONTENT, 0, 0, 0o600)

    assert not node.seen(path).exists()


def test_copy_aside_keeps_owner_and_mode(node):
    path = f"{node.directory}/token"
    node_writes.replace(node.target, path, CONTENT, NOBODY, NOBODY, 0o640)

    first = node_writes.copy_aside(node.target, path, "20261204T000000Z")
    second = node_writes.copy_aside(node.target, path, "20261204T000000Z")

    assert first == f"{path}.20261204T000000Z.bak"
    assert second == f"{path}.20261204T000000Z-1.bak"
    copy = node.seen(first)
    assert copy.read_text(encoding="utf-8") == CONTENT
    assert (copy.stat().st_uid, copy.stat().st_mode & 0o7777) == (NOBODY, 0o640)
    assert node.seen(path).exists()


def test_move_aside_renames(node):
    path = f"{node.directory}/unit.service"
    node_writes.replace(node.target, path, "[Unit]\n", 0, 0, 0o644)

    moved = node_writes.move_aside(node.target, path, "20261204T000000Z")

    assert moved == f"{path}.20261204T000000Z.bak"
    assert not node.seen(path).exists()
    assert node.seen(moved).read_text(encoding="utf-8") == "[Unit]\n"


def test_restore_puts_backup_back(node):
    path = f"{node.directory}/token"
    node_writes.replace(node.target, path, CONTENT, NOBODY, NOBODY, 0o640)
    backup = node_writes.copy_aside(node.target, path, "20261204T000000Z")
    node_writes.replace(node.target, path, "changed\n", 0, 0, 0o600)

    node_writes.restore(node.target, backup, path)

    restored = node.seen(path)
    assert restored.read_text(encoding="utf-8") == CONTENT
    assert (restored.stat().st_uid, restored.stat().st_mode & 0o7777) == (NOBODY, 0o640)
    assert node.seen(backup).exists()


def test_exists_and_remove(node):
    path = f"{node.directory}/token"
    assert not node_writes.exists(node.target, path)

    node_writes.replace(node.target, path, CONTENT, 0, 0, 0o600)
    assert node_writes.exists(node.target, path)

    node_writes.remove(node.target, path)
    assert not node_writes.exists(node.target, path)


def test_write_to_stopped_host_is_unreachable(test_hosts):
    host = test_hosts.hosts[0]
    remote = Target(testinfra.get_host(host.connection, ssh_config=str(test_hosts.ssh_config)), label="stopped")
    test_hosts.stop(host.name)
    try:
        with pytest.raises(TargetError, match="unreachable"):
            node_writes.replace(remote, "/srv/token", CONTENT, 0, 0, 0o600)
    finally:
        test_hosts.start(host.name)
