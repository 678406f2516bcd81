"""``pytest --rollback RUN_ID``: undo a fixing run from its journal and exit."""

from __future__ import annotations

from pathlib import Path

from mesh_compliance.consul import ConsulClient, ConsulConfigError, resolve_settings
from mesh_compliance.errors import TargetError
from mesh_compliance.journal import read_journal
from mesh_compliance.locking import LockBusy, lock_for
from mesh_compliance.nodes import InventoryError, open_target, run_nodes
from mesh_compliance.results import EXIT_LOCKED, EXIT_ROLLBACK_INCOMPLETE
from mesh_compliance.rollback import rollback
from mesh_compliance.site import SiteError, load_site

EXIT_USAGE = 4


def run_rollback(config) -> int:
    option = config.option
    try:
        entries = read_journal(Path(option.mesh_journal_dir), option.mesh_rollback)
        settings = resolve_settings(option.mesh_consul_addr, option.mesh_consul_token_file, option.mesh_consul_timeout)
        site = load_site(option.mesh_site)
        targets = {node.name: open_target(config, site, node) for node in run_nodes(config, site)}
    except (FileNotFoundError, ConsulConfigError, SiteError, InventoryError) as exc:
        print(f"rollback: {exc}")
        return EXIT_USAGE

    consul = ConsulClient(settings)
    lock = lock_for(config, f"rollback-{option.mesh_rollback}", settings, list(targets.values()))
    try:
        lock.acquire()
    except (LockBusy, TargetError) as exc:
        print(f"rollback: {exc}")
        return EXIT_LOCKED

    try:
        outcomes = rollback(entries, consul, targets)
    finally:
        lock.release()

    print(f"rollback of run {option.mesh_rollback}: {len(entries)} journalled change(s), newest first")
    for outcome in outcomes:
        print("  " + outcome.describe())
    missing = [outcome for outcome in outcomes if not outcome.restored]
    print(f"{len(outcomes) - len(missing)} restored, {len(missing)} not restored")
    return EXIT_ROLLBACK_INCOMPLETE if missing else 0
