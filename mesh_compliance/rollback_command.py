"""``pytest --rollback RUN_ID``: undo a fixing run from its journal and exit."""

from __future__ import annotations

from pathlib import Path

import testinfra

from mesh_compliance.consul import ConsulClient, ConsulConfigError, resolve_settings
from mesh_compliance.journal import read_journal
from mesh_compliance.locking import FixLock, LockBusy, LOCK_FILE
from mesh_compliance.results import EXIT_LOCKED, EXIT_ROLLBACK_INCOMPLETE
from mesh_compliance.rollback import rollback
from mesh_compliance.target import Target

EXIT_USAGE = 4


def run_rollback(config) -> int:
    option = config.option
    try:
        entries = read_journal(Path(option.mesh_journal_dir), option.mesh_rollback)
        settings = resolve_settings(option.mesh_consul_addr, option.mesh_consul_token_file, option.mesh_consul_timeout)
    except (FileNotFoundError, ConsulConfigError) as exc:
        print(f"rollback: {exc}")
        return EXIT_USAGE

    consul = ConsulClient(settings)
    target = Target(testinfra.get_host("local://"), option.mesh_root)
    root = option.mesh_root or "/"
    lock = FixLock(f"rollback-{option.mesh_rollback}", str(Path(root) / LOCK_FILE.lstrip("/")),
                   consul if settings.token else None, option.mesh_lock_timeout)
    try:
        lock.acquire()
    except LockBusy as exc:
        print(f"rollback: {exc}")
        return EXIT_LOCKED

    try:
        outcomes = rollback(entries, consul, target)
    finally:
        lock.release()

    print(f"rollback of run {option.mesh_rollback}: {len(entries)} journalled change(s), newest first")
    for outcome in outcomes:
        print("  " + outcome.describe())
    missing = [outcome for outcome in outcomes if not outcome.restored]
    print(f"{len(outcomes) - len(missing)} restored, {len(missing)} not restored")
    return EXIT_ROLLBACK_INCOMPLETE if missing else 0
