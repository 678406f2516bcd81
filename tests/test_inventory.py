"""Nodes and roles read from an INI Ansible inventory."""

import pytest

from mesh_compliance.nodes import InventoryError, inventory_nodes

INVENTORY = """
# Carbonio install playbook groups
[proxyServers]
proxy-1 ansible_host=192.0.2.11

[filesServers]
mbox-1 ansible_host=192.0.2.21 ansible_user=admin ansible_port=2222
mbox-2

[gateway]
mbox-1

[monitoring]
metrics-1 ansible_host=192.0.2.31

[all:vars]
ansible_python_interpreter=/usr/bin/python3
"""


def nodes(tmp_path, text=INVENTORY):
    path = tmp_path / "inventory.ini"
    path.write_text(text)
    return {node.name: node for node in inventory_nodes(str(path))}


def test_groups_give_roles(tmp_path):
    found = nodes(tmp_path)
    assert found["proxy-1"].roles == ("proxy",)
    assert found["mbox-1"].roles == ("files", "gateway")


def test_host_variables_build_connection(tmp_path):
    found = nodes(tmp_path)
    assert found["mbox-1"].connection == "ssh://admin@192.0.2.21:2222"
    assert found["mbox-2"].connection == "ssh://root@mbox-2"


def test_unknown_group_gives_other_role(tmp_path):
    assert nodes(tmp_path)["metrics-1"].roles == ("other",)


def test_vars_sections_are_not_hosts(tmp_path):
    assert "ansible_python_interpreter=/usr/bin/python3" not in nodes(tmp_path)


def test_empty_inventory_is_rejected(tmp_path):
    with pytest.raises(InventoryError, match="lists no host"):
        nodes(tmp_path, "[gateway]\n")


def test_missing_inventory_is_named(tmp_path):
    with pytest.raises(InventoryError, match="cannot read Ansible inventory"):
        inventory_nodes(str(tmp_path / "absent.ini"))
