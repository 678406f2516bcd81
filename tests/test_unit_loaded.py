"""The gateway unit as systemd loads it: load_unit, the gateway-unit-loaded control and its fixer."""

from __future__ import annotations

import dataclasses
import os
import textwrap
from pathlib import Path

import pytest
import testinfra

from mesh_compliance.errors import FixError
from mesh_compliance.expected import unit_text
from mesh_compliance.fixing import FixContext, FixRefused
from mesh_compliance.site import Site
from mesh_compliance.systemd import SOURCE_FILES, SOURCE_SHOW, load_unit, parse_show_exec_start
from mesh_compliance.target import Target
from remediations.unit_loaded import fix_loaded_unit
from tests.conftest import needs_root
from tests.labstate_unit import backups_of, link_to_dev_null, write_unit_file

CONTROL = "gateway-unit-loaded"
UNIT = "carbonio-gateway.service"
UNIT_PATH = "/lib/systemd/system/carbonio-gateway.service"
ADMIN_COPY = "/etc/systemd/system/carbonio-gateway.service"
DROPIN_DIR = "/etc/systemd/system/carbonio-gateway.service.d"
DOCUMENTED = unit_text(Site())
TOKEN_FILE = "/etc/carbonio/gateway/service-discover/token"
DOCUMENTED_EXEC = (f"/usr/bin/consul connect envoy -token-file {TOKEN_FILE} -admin-bind localhost:0 "
                   "-gateway=terminating -register -service carbonio-gateway")
NO_TOKEN_FILE = "/usr/bin/consul connect envoy -admin-bind localhost:0 -gateway=terminating -register -service carbonio-gateway"


def local_target(root: Path | None) -> Target:
    return Target(testinfra.get_host("local://"), str(root) if root else None)


def write(root: Path, node_path: str, text: str) -> Path:
    path = root / node_path.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# -- load_unit from unit files ---------------------------------------------------

@pytest.fixture
def root(tmp_path):
    root = tmp_path / "root"
    write(root, UNIT_PATH, DOCUMENTED)
    return root


def test_files_documented_unit(root):
    loaded = load_unit(local_target(root), UNIT)
    assert loaded.source == SOURCE_FILES
    assert loaded.fragment_path == UNIT_PATH
    assert loaded.dropin_paths == ()
    assert loaded.exec_start == DOCUMENTED_EXEC.split()
    assert loaded.user == "carbonio-gateway"
    assert loaded.need_daemon_reload is None
    assert loaded.load_state == "loaded"
    assert loaded.unit_file_state == "disabled"


def test_files_etc_copy_shadows_lib(root):
    write(root, ADMIN_COPY, DOCUMENTED.replace("User=carbonio-gateway", "User=root"))
    loaded = load_unit(local_target(root), UNIT)
    assert loaded.fragment_path == ADMIN_COPY
    assert loaded.user == "root"


def test_files_dropins_apply_in_name_order(root):
    write(root, f"{DROPIN_DIR}/20-b.conf", "[Service]\nUser=second\n")
    write(root, "/lib/systemd/system/carbonio-gateway.service.d/10-a.conf", "[Service]\nUser=first\n")
    loaded = load_unit(local_target(root), UNIT)
    assert loaded.dropin_paths == (
        "/lib/systemd/system/carbonio-gateway.service.d/10-a.conf",
        f"{DROPIN_DIR}/20-b.conf",
    )
    assert loaded.user == "second"


def test_files_etc_dropin_hides_same_name(root):
    write(root, "/lib/systemd/system/carbonio-gateway.service.d/50-x.conf", "[Service]\nUser=lib\n")
    write(root, f"{DROPIN_DIR}/50-x.conf", "[Service]\nLimitNOFILE=1024\n")
    loaded = load_unit(local_target(root), UNIT)
    assert loaded.dropin_paths == (f"{DROPIN_DIR}/50-x.conf",)
    assert loaded.user == "carbonio-gateway"


def test_files_dev_null_dropin_masks(root):
    write(root, "/lib/systemd/system/carbonio-gateway.service.d/50-x.conf", "[Service]\nUser=lib\n")
    (root / DROPIN_DIR.lstrip("/")).mkdir(parents=True)
    (root / DROPIN_DIR.lstrip("/") / "50-x.conf").symlink_to("/dev/null")
    loaded = load_unit(local_target(root), UNIT)
    assert loaded.dropin_paths == ()
    assert loaded.user == "carbonio-gateway"


def test_files_empty_exec_start_resets(root):
    write(root, f"{DROPIN_DIR}/override.conf", f"[Service]\nExecStart=\nExecStart={NO_TOKEN_FILE}\n")
    loaded = load_unit(local_target(root), UNIT)
    assert loaded.exec_start == NO_TOKEN_FILE.split()
    assert len(loaded.exec_start_commands) == 1


def test_files_exec_start_without_reset_adds(root):
    write(root, f"{DROPIN_DIR}/override.conf", f"[Service]\nExecStart={NO_TOKEN_FILE}\n")
    loaded = load_unit(local_target(root), UNIT)
    assert len(loaded.exec_start_commands) == 2


def test_files_type_and_prefix_dropins(root):
    write(root, "/etc/systemd/system/service.d/10-all.conf", "[Service]\nUser=everyone\n")
    write(root, "/etc/systemd/system/carbonio-.service.d/20-prefix.conf", "[Service]\nLimitNOFILE=1\n")
    loaded = load_unit(local_target(root), UNIT)
    assert loaded.dropin_paths == (
        "/etc/systemd/system/service.d/10-all.conf",
        "/etc/systemd/system/carbonio-.service.d/20-prefix.conf",
    )
    assert loaded.user == "everyone"


def test_files_masked_fragment(root):
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / ADMIN_COPY.lstrip("/")).symlink_to("/dev/null")
    loaded = load_unit(local_target(root), UNIT)
    assert loaded.load_state == "masked"
    assert loaded.exec_start == []


def test_files_missing_unit(tmp_path):
    loaded = load_unit(local_target(tmp_path), UNIT)
    assert loaded.load_state == "not-found"
    assert loaded.fragment_path is None


def test_files_continuation_lines(root):
    write(root, UNIT_PATH, DOCUMENTED.replace(" -admin-bind", " \\\n    -admin-bind"))
    loaded = load_unit(local_target(root), UNIT)
    assert loaded.exec_start == DOCUMENTED_EXEC.split()


# -- load_unit from systemctl show, with a stand-in systemctl --------------------

# A stand-in for systemctl, because this machine has no running systemd: it
# prints canned `systemctl show` output and logs every call.
STAND_IN = """\
#!/bin/sh
# Stand-in systemctl for tests: no systemd runs on the test machine.
echo "$*" >> "$STAND_IN_DIR/calls"
case "$1" in
  is-system-running) echo running ;;
  show) if [ "$3" = ActiveState ]; then cat "$STAND_IN_DIR/active"; else cat "$STAND_IN_DIR/show"; fi ;;
  is-enabled) cat "$STAND_IN_DIR/enabled" ;;
  daemon-reload) if [ -f "$STAND_IN_DIR/show.reloaded" ]; then mv "$STAND_IN_DIR/show.reloaded" "$STAND_IN_DIR/show"; fi ;;
esac
exit 0
"""


def show_output(fragment: str, exec_start: str, *, dropins: str = "", user: str = "carbonio-gateway",
                reload: str = "no") -> str:
    return textwrap.dedent(f"""\
        User={user}
        ExecStart={{ path=/usr/bin/consul ; argv[]={exec_start} ; ignore_errors=no ; start_time=[n/a] ; stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }}
        NeedDaemonReload={reload}
        LoadState=loaded
        FragmentPath={fragment}
        DropInPaths={dropins}
        UnitFileState=enabled
        """)


@pytest.fixture
def stand_in(tmp_path, monkeypatch):
    """Directory of a stand-in systemctl put first on PATH."""
    directory = tmp_path / "stand-in"
    directory.mkdir()
    script = directory / "systemctl"
    script.write_text(STAND_IN)
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{directory}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("STAND_IN_DIR", str(directory))
    return directory


def calls(stand_in: Path) -> list[str]:
    path = stand_in / "calls"
    return path.read_text().splitlines() if path.exists() else []


def test_show_parses_loaded_unit(stand_in):
    (stand_in / "show").write_text(show_output(UNIT_PATH, DOCUMENTED_EXEC, dropins=f"{DROPIN_DIR}/a.conf {DROPIN_DIR}/b.conf"))
    loaded = load_unit(local_target(None), UNIT)
    assert loaded.source == SOURCE_SHOW
    assert loaded.fragment_path == UNIT_PATH
    assert loaded.dropin_paths == (f"{DROPIN_DIR}/a.conf", f"{DROPIN_DIR}/b.conf")
    assert loaded.exec_start == DOCUMENTED_EXEC.split()
    assert loaded.user == "carbonio-gateway"
    assert loaded.need_daemon_reload is False
    assert loaded.unit_file_state == "enabled"
    assert loaded.load_state == "loaded"
    assert f"show -p FragmentPath,DropInPaths,ExecStart,User,NeedDaemonReload,UnitFileState,LoadState -- {UNIT}" in calls(stand_in)


def test_show_need_daemon_reload_and_no_user(stand_in):
    (stand_in / "show").write_text(show_output(UNIT_PATH, DOCUMENTED_EXEC, user="", reload="yes"))
    loaded = load_unit(local_target(None), UNIT)
    assert loaded.need_daemon_reload is True
    assert loaded.user is None


def test_show_exec_start_quoted_argument():
    value = '{ path=/bin/sh ; argv[]=/bin/sh -c "echo a ; b" ; ignore_errors=no ; start_time=[n/a] }'
    assert parse_show_exec_start(value) == ["/bin/sh", "-c", "echo a ; b"]


def live_context(tmp_path: Path, fragment: Path, allow: frozenset[str] = frozenset()) -> FixContext:
    site = Site()
    site = dataclasses.replace(site, gateway=dataclasses.replace(site.gateway, unit_path=str(fragment)))
    return FixContext(site=site, consul=None, target=local_target(None), allow=allow,
                      backup_dir=tmp_path / "backups", run_id="test")


def test_live_fix_reloads_when_needed(stand_in, tmp_path):
    fragment = write(tmp_path, "units/carbonio-gateway.service", DOCUMENTED)
    (stand_in / "show").write_text(show_output(str(fragment), DOCUMENTED_EXEC, reload="yes"))
    (stand_in / "show.reloaded").write_text(show_output(str(fragment), DOCUMENTED_EXEC))
    ctx = live_context(tmp_path, fragment)
    fix_loaded_unit(ctx)
    assert "daemon-reload" in calls(stand_in)
    assert [change.action for change in ctx.changes] == ["reloaded unit files"]


def test_live_fix_moves_dropin_with_opt_in(stand_in, tmp_path):
    fragment = write(tmp_path, "units/carbonio-gateway.service", DOCUMENTED)
    dropin = write(tmp_path, "units/carbonio-gateway.service.d/override.conf", "[Service]\nUser=root\n")
    (stand_in / "show").write_text(show_output(str(fragment), DOCUMENTED_EXEC, dropins=str(dropin), user="root"))
    (stand_in / "show.reloaded").write_text(show_output(str(fragment), DOCUMENTED_EXEC))

    with pytest.raises(FixRefused, match="--allow=remove-unit-override"):
        fix_loaded_unit(live_context(tmp_path, fragment))
    assert dropin.exists()

    ctx = live_context(tmp_path, fragment, frozenset({"remove-unit-override"}))
    fix_loaded_unit(ctx)
    assert not dropin.exists()
    assert len(backups_of(dropin)) == 1
    assert backups_of(dropin)[0].read_text() == "[Service]\nUser=root\n"
    logged = calls(stand_in)
    assert logged.index("daemon-reload") < logged.index(f"try-restart {UNIT}")


def test_fix_refuses_to_leave_no_unit(tmp_path, root):
    (root / UNIT_PATH.lstrip("/")).unlink()
    write(root, ADMIN_COPY, DOCUMENTED.replace("User=carbonio-gateway", "User=root"))
    ctx = FixContext(site=Site(), consul=None, target=local_target(root),
                     allow=frozenset({"remove-unit-override"}), backup_dir=tmp_path / "backups", run_id="test")
    with pytest.raises(FixError, match="does not exist"):
        fix_loaded_unit(ctx)
    assert (root / ADMIN_COPY.lstrip("/")).exists()


# -- the control against the lab -------------------------------------------------

lab = [needs_root, pytest.mark.lab]


@pytest.mark.usefixtures("compliant_lab")
class TestControl:
    pytestmark = lab

    def test_compliant_passes(self, suite):
        assert suite("--control", CONTROL).verdict(CONTROL) == "PASS"

    def test_admin_copy_exec_start_fails(self, state, suite):
        write_unit_file(state, ADMIN_COPY, DOCUMENTED.replace(f"-token-file {TOKEN_FILE} ", ""))
        run = suite("--control", CONTROL)
        assert run.verdict(CONTROL) == "FAIL"
        assert f"admin copy {ADMIN_COPY} shadows {UNIT_PATH}" in run.message(CONTROL)
        assert "-token-file is missing" in run.message(CONTROL)

    def test_admin_copy_user_fails(self, state, suite):
        write_unit_file(state, ADMIN_COPY, DOCUMENTED.replace("User=carbonio-gateway", "User=root"))
        run = suite("--control", CONTROL)
        assert run.verdict(CONTROL) == "FAIL"
        assert f"admin copy {ADMIN_COPY}" in run.message(CONTROL)
        assert "runs as root" in run.message(CONTROL)

    def test_admin_copy_same_meaning_warns(self, state, suite):
        same = DOCUMENTED.replace(f"-token-file {TOKEN_FILE} -admin-bind localhost:0",
                                  f"-token-file={TOKEN_FILE} \\\n    -admin-bind=localhost:0")
        write_unit_file(state, ADMIN_COPY, same)
        run = suite("--control", CONTROL)
        assert run.verdict(CONTROL) == "WARN"
        assert f"systemd loads {ADMIN_COPY} instead of {UNIT_PATH}" in run.message(CONTROL)

    def test_dropin_exec_start_fails(self, state, suite):
        dropin = f"{DROPIN_DIR}/override.conf"
        write_unit_file(state, dropin, f"[Service]\nExecStart=\nExecStart={NO_TOKEN_FILE}\n")
        run = suite("--control", CONTROL)
        assert run.verdict(CONTROL) == "FAIL"
        assert f"drop-in {dropin} changes ExecStart" in run.message(CONTROL)
        assert "-token-file is missing" in run.message(CONTROL)

    def test_dropin_other_token_file_fails(self, state, suite):
        dropin = f"{DROPIN_DIR}/token.conf"
        other = DOCUMENTED_EXEC.replace(f"-token-file {TOKEN_FILE}", "-token-file=/etc/carbonio/gateway/token")
        write_unit_file(state, dropin, f"[Service]\nExecStart=\nExecStart={other}\n")
        run = suite("--control", CONTROL)
        assert run.verdict(CONTROL) == "FAIL"
        assert f"drop-in {dropin}" in run.message(CONTROL)
        assert "-token-file is /etc/carbonio/gateway/token" in run.message(CONTROL)

    def test_dropin_user_fails(self, state, suite):
        dropin = f"{DROPIN_DIR}/user.conf"
        write_unit_file(state, dropin, "[Service]\nUser=root\n")
        run = suite("--control", CONTROL)
        assert run.verdict(CONTROL) == "FAIL"
        assert f"drop-in {dropin} changes User" in run.message(CONTROL)

    def test_type_dropin_user_fails(self, state, suite):
        dropin = "/etc/systemd/system/service.d/10-user.conf"
        write_unit_file(state, dropin, "[Service]\nUser=nobody\n")
        run = suite("--control", CONTROL)
        assert run.verdict(CONTROL) == "FAIL"
        assert f"drop-in {dropin} changes User" in run.message(CONTROL)

    def test_harmless_dropin_passes(self, state, suite):
        write_unit_file(state, f"{DROPIN_DIR}/limits.conf", "[Service]\nLimitNOFILE=131072\n")
        assert suite("--control", CONTROL).verdict(CONTROL) == "PASS"

    def test_dropin_repeating_command_passes(self, state, suite):
        same = DOCUMENTED_EXEC.replace(f"-token-file {TOKEN_FILE}", f"-token-file={TOKEN_FILE}")
        write_unit_file(state, f"{DROPIN_DIR}/same.conf", f"[Service]\nExecStart=\nExecStart={same}\n")
        assert suite("--control", CONTROL).verdict(CONTROL) == "PASS"

    def test_masked_lib_dropin_passes(self, state, suite):
        write_unit_file(state, "/lib/systemd/system/carbonio-gateway.service.d/50-user.conf", "[Service]\nUser=root\n")
        link_to_dev_null(state, f"{DROPIN_DIR}/50-user.conf")
        assert suite("--control", CONTROL).verdict(CONTROL) == "PASS"

    def test_masked_unit_fails(self, state, suite):
        link_to_dev_null(state, ADMIN_COPY)
        run = suite("--control", CONTROL)
        assert run.verdict(CONTROL) == "FAIL"
        assert "is masked" in run.message(CONTROL)

    def test_fix_without_opt_in_changes_nothing(self, state, suite):
        path = write_unit_file(state, f"{DROPIN_DIR}/user.conf", "[Service]\nUser=root\n")
        run = suite("--control", CONTROL, "--fix")
        assert run.verdict(CONTROL) == "FAIL"
        assert "--allow=remove-unit-override" in run.record(CONTROL)["fix"]["reason"]
        assert path.exists()
        assert backups_of(path) == []

    def test_fix_moves_dropin_and_admin_copy(self, state, suite):
        copy = write_unit_file(state, ADMIN_COPY, DOCUMENTED.replace("User=carbonio-gateway", "User=root"))
        dropin = write_unit_file(state, f"{DROPIN_DIR}/override.conf", f"[Service]\nExecStart=\nExecStart={NO_TOKEN_FILE}\n")
        harmless = write_unit_file(state, f"{DROPIN_DIR}/limits.conf", "[Service]\nLimitNOFILE=131072\n")

        run = suite("--control", CONTROL, "--fix", "--allow=remove-unit-override")
        assert run.verdict(CONTROL) == "FIXED", run.output[-3000:]
        assert not copy.exists()
        assert not dropin.exists()
        assert harmless.exists()
        assert "User=root" in backups_of(copy)[0].read_text()
        assert NO_TOKEN_FILE in backups_of(dropin)[0].read_text()

        again = suite("--control", CONTROL, "--fix", "--allow=remove-unit-override")
        assert again.verdict(CONTROL) == "PASS"
        assert again.record(CONTROL)["fix"] is None
