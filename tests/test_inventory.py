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


CHILDREN_INI = """
mbox[01:03] ansible_user=admin

[mailbox]
mbox[01:03]

[filesServers:children]
mailbox

[carbonio:children]
filesServers
gateway

[gateway]
gw-a ansible_host="192.0.2.40"   # the terminating gateway

[carbonio:vars]
ansible_port=2200

[mailbox:vars]
ansible_port=2222

[all:vars]
ansible_user=deploy
"""

YAML_INVENTORY = """
all:
  vars:
    ansible_user: deploy
  children:
    carbonio:
      vars:
        ansible_port: 2200
      children:
        filesServers:
          children:
            mailbox:
              hosts:
                mbox[01:03]:
                  ansible_user: admin
              vars:
                ansible_port: 2222
        gateway:
          hosts:
            gw-a:
              ansible_host: 192.0.2.40
    monitoring:
      hosts:
        metrics-1:
"""


def test_child_groups_give_roles(tmp_path):
    found = nodes(tmp_path, CHILDREN_INI)

    assert found["mbox02"].roles == ("files",)
    assert found["gw-a"].roles == ("gateway",)


def test_host_ranges_expand(tmp_path):
    assert sorted(name for name in nodes(tmp_path, CHILDREN_INI) if name.startswith("mbox")) == ["mbox01", "mbox02", "mbox03"]


def test_inner_group_vars_win(tmp_path):
    found = nodes(tmp_path, CHILDREN_INI)

    assert found["mbox01"].connection == "ssh://admin@mbox01:2222"
    assert found["gw-a"].connection == "ssh://deploy@192.0.2.40:2200"


def test_yaml_inventory_matches_ini(tmp_path):
    path = tmp_path / "inventory.yml"
    path.write_text(YAML_INVENTORY)
    found = {node.name: node for node in inventory_nodes(str(path))}

    assert found["mbox03"].roles == ("files",)
    assert found["mbox03"].connection == "ssh://admin@mbox03:2222"
    assert found["gw-a"].roles == ("gateway",)
    assert found["gw-a"].connection == "ssh://deploy@192.0.2.40:2200"
    assert found["metrics-1"].roles == ("other",)
    assert found["metrics-1"].connection == "ssh://deploy@metrics-1"


@pytest.mark.parametrize("text, message", [
    ("[gateway:hostvars]\ngw-a\n", "unknown section type :hostvars"),
    ("[gateway]\ngw-a ansible_host='192.0.2.1\n", "line 2: No closing quotation"),
    ("[gateway]\ngw-a port\n", "expected name=value after host gw-a"),
    ("[gateway]\nnode[3:1]\n", r"host range \[3:1\] is empty"),
    ("[a:children]\nb\n[b:children]\na\n[b]\nnode\n", "is its own ancestor"),
])
def test_invalid_ini_is_named(tmp_path, text, message):
    with pytest.raises(InventoryError, match=message):
        nodes(tmp_path, text)


@pytest.mark.parametrize("text, message", [
    ("all: [gw-a]\n", "group all must be a mapping"),
    ("- gw-a\n", "must map group names to groups"),
    ("all:\n  hosts:\n    gw-a: 3\n", "host gw-a in group all must map variable names"),
    ("all:\n  hosts: {gw-a\n", "is not valid YAML"),
    ("all:\n  hosts: [gw-a]\n", "hosts of group all must be a mapping, not list"),
])
def test_invalid_yaml_is_named(tmp_path, text, message):
    path = tmp_path / "inventory.yaml"
    path.write_text(text)

    with pytest.raises(InventoryError, match=message):
        inventory_nodes(str(path))


def test_local_connection_and_root(tmp_path):
    found = nodes(tmp_path, "[gateway]\ngw ansible_connection=local carbonio_mesh_root=/srv/gw-image\n"
                            "[proxy]\npx ansible_connection=paramiko ansible_host=192.0.2.5\n")

    assert found["gw"].connection == "local://"
    assert found["gw"].root == "/srv/gw-image"
    assert found["px"].connection == "paramiko://root@192.0.2.5"


@pytest.mark.parametrize("text, message", [
    ("[gateway]\ngw ansible_connection=docker\n", "host gw has ansible_connection=docker"),
    ("[filesServers\nmbox-1\n", r"line 1: section header '\[filesServers' has no closing \]"),
])
def test_unsupported_inventory_lines_are_named(tmp_path, text, message):
    with pytest.raises(InventoryError, match=message):
        nodes(tmp_path, text)
