"""Site file validation: defaults, overrides, secrets by reference, clear errors."""

import pytest

from mesh_compliance.site import SiteError, load_site


def write(tmp_path, text):
    path = tmp_path / "site.toml"
    path.write_text(text)
    return path


def test_no_file_gives_documented_defaults():
    site = load_site(None)
    assert site.acl.policy == "carbonio-gateway-policy"
    assert site.external_service.node == "external-files-db-node"
    assert site.kv.key("db-password") == "carbonio-files/db-password"


def test_overrides_are_applied(tmp_path):
    site = load_site(write(tmp_path, '[gateway]\nservice = "gw2"\n[external_service]\nport = 6432\n'))
    assert site.gateway.service == "gw2"
    assert site.db_port == 6432


def test_nested_layout_keys(tmp_path):
    site = load_site(write(tmp_path, '[kv]\nlayout = "nested"\n'))
    assert site.kv.key("db-name") == "carbonio-files/database/credentials/db-name"


def test_unknown_key_is_named(tmp_path):
    with pytest.raises(SiteError, match=r"unknown key gateway\.servce"):
        load_site(write(tmp_path, '[gateway]\nservce = "x"\n'))


def test_wrong_type_names_key_and_type(tmp_path):
    with pytest.raises(SiteError, match=r"external_service\.port must be an integer"):
        load_site(write(tmp_path, '[external_service]\nport = "5432"\n'))


def test_bad_choice_lists_choices(tmp_path):
    with pytest.raises(SiteError, match=r"kv\.layout must be one of flat, nested"):
        load_site(write(tmp_path, '[kv]\nlayout = "deep"\n'))


def test_plain_secret_is_rejected(tmp_path):
    with pytest.raises(SiteError, match="must not hold the secret itself"):
        load_site(write(tmp_path, '[kv.values]\ndb_password = "hunter22"\n'))


def test_secret_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("MESH_TEST_PW", " s3cret-value \n")
    site = load_site(write(tmp_path, '[kv.values]\ndb_password = { env = "MESH_TEST_PW" }\n'))
    assert site.kv.values.db_password.read() == "s3cret-value"


def test_missing_env_secret_names_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("MESH_TEST_UNSET", raising=False)
    site = load_site(write(tmp_path, '[kv.values]\ndb_password = { env = "MESH_TEST_UNSET" }\n'))
    with pytest.raises(SiteError, match="MESH_TEST_UNSET is not set"):
        site.kv.values.db_password.read()


def test_secret_table_needs_one_source(tmp_path):
    with pytest.raises(SiteError, match="exactly one of the keys env or file"):
        load_site(write(tmp_path, '[kv.values]\ndb_password = { env = "A", file = "/b" }\n'))


def test_invalid_toml_is_reported(tmp_path):
    with pytest.raises(SiteError, match="not valid TOML"):
        load_site(write(tmp_path, "[gateway\n"))


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(SiteError, match="not found"):
        load_site(tmp_path / "absent.toml")


NODE = '[[nodes]]\nname = "mbox-1"\nroles = ["{role}"]\nconnection = "{connection}"\n'


@pytest.mark.parametrize("role, connection, message", [
    ("files", "shh://root@mbox-1", r"nodes\[0\].connection 'shh://root@mbox-1' of node mbox-1 is not a testinfra"),
    ("files", "root@mbox-1", "write TYPE://\\[user@\\]host\\[:port\\] with TYPE one of local, ssh"),
    ("file", "ssh://root@mbox-1", r"nodes\[0\].roles must list roles from gateway"),
])
def test_invalid_node_is_named(tmp_path, role, connection, message):
    with pytest.raises(SiteError, match=message):
        load_site(write(tmp_path, NODE.format(role=role, connection=connection)))


def test_two_nodes_with_one_name_are_rejected(tmp_path):
    text = NODE.format(role="files", connection="local://") * 2
    with pytest.raises(SiteError, match="used twice"):
        load_site(write(tmp_path, text))
