"""pytest plugin: options, fixtures, the control protocol and verdicts.

A control is evaluated while its test is set up, right after its fixtures:
- the body passes: PASS (WARN when it recorded a warning);
- an assert fails: FAIL, re-raised in the call phase;
- it raises ``Undecided``: the setup fails, so pytest, pytest-html and
  JUnit all report ERROR, distinct from FAIL.
With ``--fix`` a FAIL runs the control's fixer, then the control again:
FIXED when it passes, FIX FAILED when it still fails or the fixer broke.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from mesh_compliance import results
from mesh_compliance.consul import ConsulClient, ConsulConfigError, resolve_settings
from mesh_compliance.controls import CONTROLS, PROFILES, Evidence, spec_of
from mesh_compliance.evaluate import Outcome, evaluate_control
from mesh_compliance.fixing import OPT_IN_KINDS
from mesh_compliance.log import logger
from mesh_compliance.nodes import InventoryError, NoNode, open_target, run_nodes
from mesh_compliance.vantage import gateway_node
from mesh_compliance.redact import RedactingFilter
from mesh_compliance.reporting import html_hooks, junit, ledger, waivers
from mesh_compliance.reporting.run_end import RunEnd
from mesh_compliance.shared_results import ORDERED_DIST_MODES, SharedResults, create_directory
from mesh_compliance.site import SiteError, load_site

OUTCOME_KEY = pytest.StashKey[Outcome]()
RUN_KEY = pytest.StashKey["results.Run"]()
SHARED_KEY = pytest.StashKey[str]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("carbonio-mesh-compliance", "Carbonio Mesh compliance")
    group.addoption("--site", dest="mesh_site", metavar="PATH",
                    help="site file (TOML) with the expected state; default: the documented values")
    group.addoption("--root", dest="mesh_root", metavar="DIR",
                    help="audit a node whose filesystem is mounted at DIR (image, chroot, lab)")
    group.addoption("--consul-addr", dest="mesh_consul_addr", metavar="URL",
                    help="Consul HTTP address; default: CONSUL_HTTP_ADDR, else http://127.0.0.1:8500")
    group.addoption("--consul-token-file", dest="mesh_consul_token_file", metavar="PATH",
                    help="file holding the Consul token; default: CONSUL_HTTP_TOKEN_FILE, else CONSUL_HTTP_TOKEN")
    group.addoption("--consul-timeout", dest="mesh_consul_timeout", type=float, default=10.0, metavar="SECONDS",
                    help="timeout of each Consul HTTP request in seconds (default 10)")
    group.addoption("--control", dest="mesh_controls", action="append", default=[], metavar="ID",
                    help="run only this control (repeatable); default: every control")
    group.addoption("--profile", dest="mesh_profile", choices=PROFILES, metavar="NAME",
                    help="end state to assert: deployed or decommissioned; default: the site file's profile")
    group.addoption("--fix", dest="mesh_fix", action="store_true",
                    help="run the fixer of every failing control, then the control again")
    group.addoption("--dry-run", dest="mesh_dry_run", action="store_true",
                    help="with --fix (implied): show the change each fixer would make and change nothing")
    group.addoption("--journal-dir", dest="mesh_journal_dir", default="reports/journal", metavar="DIR",
                    help="where each fixing run journals its changes (default reports/journal)")
    group.addoption("--rollback", dest="mesh_rollback", metavar="RUN_ID",
                    help="undo the changes journalled by fixing run RUN_ID, newest first, and exit")
    group.addoption("--lock-timeout", dest="mesh_lock_timeout", type=float, default=60.0, metavar="SECONDS",
                    help="how long a fixing run waits for another one on the same target (default 60)")
    group.addoption("--allow", dest="mesh_allow", action="append", default=[], metavar="KIND",
                    choices=sorted(OPT_IN_KINDS),
                    help="allow a risky kind of fix: " + "; ".join(f"{k}: {v}" for k, v in OPT_IN_KINDS.items()))
    group.addoption("--results-json", dest="mesh_results_json", metavar="PATH",
                    help="write one JSON record per control and node to PATH")
    group.addoption("--prometheus-textfile", dest="mesh_prometheus_textfile", metavar="PATH",
                    help="write the run's verdicts as Prometheus metrics to PATH (textfile collector, *.prom)")
    group.addoption("--backup-dir", dest="mesh_backup_dir", default="reports/backups", metavar="DIR",
                    help="where fixers keep the previous version of Consul objects (default reports/backups)")
    group.addoption("--ledger", dest="mesh_ledger", metavar="PATH",
                    help="after the run, write a snapshot of each control's verdict and evidence digest to PATH")
    group.addoption("--baseline", dest="mesh_baseline", metavar="PATH",
                    help="compare the run with a snapshot written by --ledger; new drift exits 12")
    group.addoption("--waivers", dest="mesh_waivers", metavar="PATH",
                    help="TOML file of [[waiver]] tables; a waived FAIL becomes WAIVED until the waiver expires")


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config):
    if config.option.mesh_rollback:
        from mesh_compliance.rollback_command import run_rollback

        return run_rollback(config)
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "control(id): a compliance control with its stable id")
    if config.option.help:
        return

    run = _start_run(config)
    if run.fix:
        _share_fix_results(config, run)
    config.pluginmanager.register(results.Recorder(run), "mesh_compliance.recorder")
    config.pluginmanager.register(RunEnd(config, run), "mesh_compliance.run_end")
    config.pluginmanager.register(ledger.LedgerPlugin.from_config(config, run), "mesh_compliance.ledger")
    config.pluginmanager.register(waivers.WaiverPlugin.from_config(config), "mesh_compliance.waivers")
    config.pluginmanager.register(junit.JUnitProperties(), "mesh_compliance.junit")
    _install_redaction(config)
    if config.pluginmanager.hasplugin("html"):
        config.pluginmanager.register(html_hooks, "mesh_compliance.html")
        html_hooks.RUN[0] = run


def _share_fix_results(config: pytest.Config, run: "results.Run") -> None:
    """With --fix and pytest-xdist workers, let every worker see the verdicts of the others.

    A fixer waits for its prerequisites even when another worker runs them
    (see mesh_compliance.shared_results).
    """
    worker_input = getattr(config, "workerinput", None)
    if worker_input is not None:
        if worker_input.get("mesh_shared_results"):
            run.shared = SharedResults(worker_input["mesh_shared_results"], worker_input["workerid"])
        return

    dist = config.getoption("dist", "no")
    if dist != "no" and dist not in ORDERED_DIST_MODES:
        raise pytest.UsageError(f"--fix cannot run with --dist={dist}, because that mode may run a fixer before "
                                f"its prerequisites; use --dist={' or --dist='.join(ORDERED_DIST_MODES)}")
    if dist != "no":
        directory = create_directory()
        config.stash[SHARED_KEY] = directory
        config.add_cleanup(lambda: shutil.rmtree(directory, ignore_errors=True))


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """Give each pytest-xdist worker the controller's run id and, with --fix, the shared results directory."""
    run = node.config.stash.get(RUN_KEY, None)
    if run is not None:
        node.workerinput["mesh_run_id"] = run.run_id
        node.workerinput["mesh_shared_results"] = node.config.stash.get(SHARED_KEY, "")


def _start_run(config: pytest.Config) -> "results.Run":
    """Read the site file and Consul settings once; pytest-metadata may ask first."""
    run = config.stash.get(RUN_KEY, None)
    if run is not None:
        return run
    try:
        site = load_site(config.option.mesh_site)
        settings = resolve_settings(config.option.mesh_consul_addr, config.option.mesh_consul_token_file,
                                    config.option.mesh_consul_timeout)
    except SiteError as exc:
        raise pytest.UsageError(f"site file {config.option.mesh_site or '(defaults)'}: {exc}") from exc
    except ConsulConfigError as exc:
        raise pytest.UsageError(str(exc)) from exc

    run = results.Run.start(config, site, settings)
    try:
        run.nodes = run_nodes(config, site)
    except InventoryError as exc:
        raise pytest.UsageError(str(exc)) from exc
    config.stash[RUN_KEY] = run
    return run


def _install_redaction(config: pytest.Config) -> None:
    logging_plugin = config.pluginmanager.get_plugin("logging-plugin")
    handlers = [getattr(logging_plugin, name, None) for name in
                ("caplog_handler", "report_handler", "log_cli_handler", "log_file_handler")]
    for handler in filter(None, handlers):
        handler.addFilter(RedactingFilter())


def _run(config: pytest.Config) -> "results.Run":
    try:
        return config.stash[RUN_KEY]
    except KeyError:
        raise pytest.UsageError("the compliance plugin was not configured; run pytest without --help") from None


# -- fixtures ----------------------------------------------------------------

@pytest.fixture(scope="session")
def site(request):
    """Return the expected state from the site file."""
    return _run(request.config).site


@pytest.fixture(scope="session")
def consul(request):
    """Consul client authenticated with the audit token (checked once)."""
    run = _run(request.config)
    client = ConsulClient(run.settings)
    identity = client.check_own_token()
    run.note_consul(client, identity)
    return client


@pytest.fixture
def target(request):
    """Return the audited node of this test, seen through --root when given."""
    node = request.param
    site = _run(request.config).site
    if isinstance(node, NoNode):
        where = ("in a group of the Ansible inventory named after the role (see the README)"
                 if site.fleet.ansible_inventory and not site.nodes else "in the site file's [[nodes]]")
        pytest.skip(f"not applicable: no node of this run has the role {' or '.join(node.roles)}; "
                    f"list the cluster's nodes with their roles {where}")
    return open_target(request.config, site, node)


def pytest_generate_tests(metafunc):
    """Run each node control once per node that has one of its roles."""
    if "target" not in metafunc.fixturenames:
        return
    spec = getattr(metafunc.function, "control_spec", None)
    roles = spec.roles if spec is not None else ("*",)
    nodes = [node for node in _run(metafunc.config).nodes if node.has_any(roles)]
    if not nodes:
        nodes = [NoNode(roles)]
    metafunc.parametrize("target", nodes, indirect=True, ids=[node.name for node in nodes])


@pytest.fixture(scope="session")
def db_vantage(request):
    """Return the node the database login starts from (the first gateway node) and the SSH config."""
    run = _run(request.config)
    nodes = run.nodes
    ssh_config = getattr(request.config.option, "ssh_config", None) or run.site.fleet.ssh_config or None
    return gateway_node(nodes), ssh_config


@pytest.fixture
def evidence():
    """Recorder for what the control expected and observed."""
    return Evidence()


# -- collection and protocol ---------------------------------------------------

def pytest_collection_modifyitems(session, config, items):
    from remediations import FIXERS

    order = {control_id: position for position, control_id in enumerate(FIXERS)}
    items.sort(key=lambda item: order.get(getattr(spec_of(item), "id", ""), len(order)))

    requested = set(config.option.mesh_controls)
    unknown = requested - set(CONTROLS)
    if unknown:
        raise pytest.UsageError(f"unknown control id {sorted(unknown)[0]}; known ids: {', '.join(CONTROLS)}")

    _reject_project_tests(config, items)
    profile = _run(config).profile
    selected = [item for item in items if _selected(spec_of(item), profile, requested)]
    deselected = [item for item in items if item not in selected]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
    items[:] = selected
    run = _run(config)
    if run.shared is not None:
        run.shared.scheduled = Counter(spec.id for spec in map(spec_of, selected) if spec is not None)


# The project's own tests, beside this package in a checkout; a wheel does not contain them.
PROJECT_TESTS = Path(__file__).resolve().parents[1] / "tests"
AUDIT_OPTIONS = ("mesh_site", "mesh_root", "mesh_consul_addr", "mesh_fix", "mesh_dry_run", "mesh_results_json")


def _reject_project_tests(config, items) -> None:
    """Stop an audit that collected the project's own tests, which start labs of their own.

    pytest reads ``--site PATH`` (with a space) as a test path before it has
    loaded this suite's options, so it picks another root directory, which has no
    testpaths setting, and collects everything below the current directory.
    """
    if not any(getattr(config.option, name, None) for name in AUDIT_OPTIONS):
        return
    stray = [item for item in items if item.path.is_relative_to(PROJECT_TESTS)]
    if stray:
        raise pytest.UsageError(f"this audit collected the suite's own tests ({stray[0].nodeid}); write options "
                                "as --site=PATH, not --site PATH, and name no path or name checks/")


def _selected(spec, profile: str, requested: set[str]) -> bool:
    if spec is None:
        return True
    if requested:
        return spec.id in requested
    return profile in spec.profiles


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    result = yield
    spec = spec_of(item)
    if spec is None or item.config.option.setuponly:
        return result

    outcome = evaluate_control(item, spec, _run(item.config))
    item.stash[OUTCOME_KEY] = outcome
    if outcome.verdict == "ERROR":
        raise outcome.error
    if outcome.verdict == "N/A":
        pytest.skip(outcome.message)
    return result


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    outcome = pyfuncitem.stash.get(OUTCOME_KEY, None)
    if outcome is None:
        return None
    if outcome.failure is not None:
        raise outcome.failure
    return True


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    spec = spec_of(item)
    if spec is None:
        return report

    outcome = item.stash.get(OUTCOME_KEY, None)
    if report.when == "setup" and report.skipped and outcome is None:
        # The target fixture found no node for this control.
        outcome = Outcome("N/A", _skip_reason(report))
        item.stash[OUTCOME_KEY] = outcome
    if report.when == "setup" and report.failed and outcome is None:
        # A fixture failed before the control ran (for example the audit
        # token is unknown): the control could not decide.
        outcome = Outcome.undecided(call.excinfo.value if call.excinfo else None)
        item.stash[OUTCOME_KEY] = outcome
    if outcome is not None and outcome.verdict == "ERROR" and report.failed and call.excinfo is not None:
        # The chained transport tracebacks (urllib3, socket) tell an auditor
        # nothing the message does not; keep the short form of the error.
        report.longrepr = call.excinfo.getrepr(style="short", chain=False)
    if outcome is not None and (report.when == "call" or report.failed or report.skipped):
        results.annotate(report, item, spec, outcome)
    return report


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return "not applicable"


def pytest_report_teststatus(report, config):
    verdict = results.verdict_of(report)
    if verdict is None:
        return None
    if verdict == "ERROR":
        return "error", "E", "ERROR"
    if verdict == "WARN":
        return "warn", "W", "WARN"
    if verdict == "FIXED":
        return "fixed", "+", "FIXED"
    if verdict == "FIX FAILED":
        return "failed", "F", "FIX FAILED"
    if verdict == "N/A":
        return "skipped", "s", "N/A"
    return None


def pytest_sessionstart(session):
    run = session.config.stash.get(RUN_KEY, None)
    if run is None or not run.fix or run.dry_run or hasattr(session.config, "workerinput"):
        # pytest-xdist workers run under the locks their controller holds.
        return
    from mesh_compliance.errors import TargetError
    from mesh_compliance.locking import LockBusy, lock_for

    targets = [open_target(session.config, run.site, node) for node in run.nodes]
    locks = lock_for(session.config, run.run_id, run.settings, targets)
    try:
        locks.acquire()
    except LockBusy as exc:
        pytest.exit(str(exc), returncode=results.EXIT_LOCKED)
    except TargetError as exc:
        pytest.exit(f"{exc}; no fixer ran", returncode=results.EXIT_LOCKED)
    session.config.add_cleanup(locks.release)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    run = session.config.stash.get(RUN_KEY, None)
    if run is None or not run.records:
        return
    code = run.exit_code(int(exitstatus))
    session.exitstatus = code
    run.finish(code)
    logger.debug("compliance exit code %s", code)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    run = config.stash.get(RUN_KEY, None)
    if run is None or not run.records:
        return
    terminalreporter.write_sep("=", "compliance verdicts")
    for line in run.summary_lines():
        terminalreporter.write_line(line)


@pytest.hookimpl(optionalhook=True)
def pytest_metadata(metadata, config):
    """Keep the environment table free of secrets and add what auditors need."""
    if not config.option.help:
        metadata.update(_start_run(config).metadata())
    results.scrub_metadata(metadata)

