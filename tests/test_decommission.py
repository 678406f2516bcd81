"""The decommissioned profile against a lab repaired to the deployed state."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from mesh_compliance.expected import unit_text
from mesh_compliance.fixing import FixContext
from mesh_compliance.site import Site
from remediations.decommission import fix_unit_removed
from tests.conftest import ALL_OPT_INS, needs_root
from tests.labstate import LabState
from tests.suite import run_suite
from tests.test_unit_loaded import calls, local_target, stand_in  # noqa: F401 (stand_in is a fixture)

pytestmark = [needs_root, pytest.mark.lab]

UNIT_REMOVED = "decom-unit-removed"
ENTRY_DELETED = "decom-config-entry-deleted"
DEREGISTERED = "decom-service-deregistered"
TOKENS_UNLINKED = "decom-tokens-unlinked"
DECOMMISSION = (UNIT_REMOVED, ENTRY_DELETED, DEREGISTERED, TOKENS_UNLINKED)

UNIT = "carbonio-gateway.service"
UNIT_PATH = "/lib/systemd/system/carbonio-gateway.service"
DOCUMENTED = unit_text(Site())
GLOBAL_MANAGEMENT = "00000000-0000-0000-0000-000000000001"


@pytest.fixture(scope="module")
def deployed(drifted_lab, tmp_path_factory):
    """A fresh lab repaired to the deployed state; the decommission tests then remove it."""
    run_suite(drifted_lab, tmp_path_factory.mktemp("deploy"), "--fix", *ALL_OPT_INS)
    state = LabState(drifted_lab)
    assert state.systemctl("is-enabled", UNIT).stdout.strip() == "enabled"
    assert state.consul("GET", "/v1/config/terminating-gateway/carbonio-gateway").status_code == 200
    assert state.consul_ok("GET", "/v1/catalog/service/carbonio-files-db")
    assert tokens_linked(state)
    return drifted_lab


@pytest.fixture
def state(deployed):
    editor = LabState(deployed)
    yield editor
    editor.restore()


@pytest.fixture
def decommission(deployed, tmp_path):
    """Run the suite with the decommissioned profile and a site that requires unlinked tokens."""
    site = site_file(deployed, tmp_path, unlink_tokens=True)

    def run(*args, **kwargs):
        return run_suite(deployed, tmp_path, f"--site={site}", "--profile=decommissioned", *args, **kwargs)
    return run


def site_file(lab, directory: Path, *, unlink_tokens: bool, profile: str | None = None) -> Path:
    text = Path(lab.site_file).read_text()
    if profile:
        text = f'profile = "{profile}"\n' + text
    path = directory / "decommission-site.toml"
    path.write_text(text + f"\n[decommission]\nunlink_tokens = {str(unlink_tokens).lower()}\n")
    return path


def tokens_linked(state: LabState) -> list[dict]:
    policy = state.consul_ok("GET", "/v1/acl/policy/name/carbonio-gateway-policy")
    return state.consul_ok("GET", "/v1/acl/tokens", params={"policy": policy["ID"]})


def test_published_removal_state_fails(state, deployed, tmp_path):
    # The state the published page leaves. `systemd stop|disable` fails, so the
    # unit stays enabled. `consul config delete` works. The agent deregister
    # call cannot remove the catalog entry on the external node.
    assert state.systemctl("is-enabled", UNIT).stdout.strip() == "enabled"
    state.delete_config_entry("terminating-gateway", "carbonio-gateway")
    assert state.consul("PUT", "/v1/agent/service/deregister/carbonio-files-db").status_code != 200

    site = site_file(deployed, tmp_path, unlink_tokens=False)
    run = run_suite(deployed, tmp_path, f"--site={site}", "--profile=decommissioned")
    assert run.verdict(UNIT_REMOVED) == "FAIL"
    assert "is enabled" in run.message(UNIT_REMOVED)
    assert f"unit files remain: {UNIT_PATH}" in run.message(UNIT_REMOVED)
    assert run.verdict(DEREGISTERED) == "FAIL"
    assert "ServiceID carbonio-gateway" in run.message(DEREGISTERED)
    assert run.verdict(ENTRY_DELETED) == "PASS"
    assert run.verdict(TOKENS_UNLINKED) == "N/A"
    assert "does not ask to unlink tokens" in run.message(TOKENS_UNLINKED)


def test_profile_from_site_file(deployed, tmp_path):
    site = site_file(deployed, tmp_path, unlink_tokens=False, profile="decommissioned")
    run = run_suite(deployed, tmp_path, f"--site={site}")
    assert set(run.verdicts) == set(DECOMMISSION)
    assert run.code == 10


def test_stopped_part_not_applicable_on_root(decommission):
    run = decommission("--control", UNIT_REMOVED)
    observed = run.record(UNIT_REMOVED)["evidence"]["observed"]
    assert observed["stopped"].startswith("not applicable")


def test_token_fix_needs_opt_in(state, decommission):
    before = tokens_linked(state)
    run = decommission("--control", TOKENS_UNLINKED, "--fix")
    assert run.verdict(TOKENS_UNLINKED) == "FAIL"
    assert "--allow=delete-token" in run.record(TOKENS_UNLINKED)["fix"]["reason"]
    assert tokens_linked(state) == before


def test_decommission_fix(state, decommission, tmp_path):
    audit = decommission()
    assert {control: audit.verdict(control) for control in DECOMMISSION} == dict.fromkeys(DECOMMISSION, "FAIL")
    secrets = [token["SecretID"] for token in tokens_linked(state)]

    fixed = decommission("--fix", "--allow=delete-token")
    assert {control: fixed.verdict(control) for control in DECOMMISSION} == dict.fromkeys(DECOMMISSION, "FIXED"), fixed.output[-3000:]

    # The unit file and the config entry of the deployed state are kept.
    unit_backups = state.root_path(UNIT_PATH).parent.glob("carbonio-gateway.service.*.bak")
    assert DOCUMENTED in [path.read_text() for path in unit_backups]
    assert not state.root_path(UNIT_PATH).exists()
    assert state.systemctl("is-enabled", UNIT).stdout.strip() != "enabled"

    kept = tmp_path / "backups" / fixed.document["run_id"] / "consul"
    entry = json.loads((kept / "terminating-gateway--carbonio-gateway.json").read_text())
    assert entry["Services"][0]["Name"] == "carbonio-files-db"
    assert list(kept.glob("catalog-service--external-files-db-node--carbonio-gateway.json"))
    token_backups = list(kept.glob("acl-token--*.json"))
    assert token_backups
    for path in token_backups:
        text = path.read_text()
        assert "SecretID" not in text
        assert all(secret not in text for secret in secrets)

    assert state.consul("GET", "/v1/config/terminating-gateway/carbonio-gateway").status_code == 404
    assert state.consul_ok("GET", "/v1/catalog/service/carbonio-files-db") == []
    assert tokens_linked(state) == []

    again = decommission("--fix", "--allow=delete-token")
    for control in DECOMMISSION:
        assert again.verdict(control) == "PASS"
        assert again.record(control)["fix"] is None


def test_own_token_is_left(state, decommission, tmp_path):
    policy = state.consul_ok("GET", "/v1/acl/policy/name/carbonio-gateway-policy")
    own = state.create_token([{"ID": policy["ID"]}, {"ID": GLOBAL_MANAGEMENT}], Description="audit token")
    token_file = state.token_file_for(tmp_path, own)

    run = decommission("--control", TOKENS_UNLINKED, "--fix", "--allow=delete-token", token_file=str(token_file))
    assert run.verdict(TOKENS_UNLINKED) == "FIX FAILED"
    assert own["AccessorID"] in run.record(TOKENS_UNLINKED)["fix"]["reason"]
    assert own["SecretID"] not in run.output
    assert [token["AccessorID"] for token in tokens_linked(state)] == [own["AccessorID"]]


def test_live_unit_removal_stops_and_disables(stand_in, tmp_path):
    # The stand-in systemctl reports an active, enabled unit; the unit name
    # is one no host has, so no host file is moved.
    (stand_in / "active").write_text("active\n")
    (stand_in / "enabled").write_text("enabled\n")
    site = Site()
    site = dataclasses.replace(site, gateway=dataclasses.replace(site.gateway, unit="mesh-compliance-stand-in.service"))
    ctx = FixContext(site=site, consul=None, target=local_target(None), allow=frozenset(),
                     backup_dir=tmp_path / "backups", run_id="test")
    fix_unit_removed(ctx)
    logged = calls(stand_in)
    assert "stop mesh-compliance-stand-in.service" in logged
    assert "disable mesh-compliance-stand-in.service" in logged
    assert "daemon-reload" not in logged
    assert [change.action for change in ctx.changes] == ["stopped", "disabled"]
