"""Undo a fixing run from its journal, newest change first."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from mesh_compliance import node_writes
from mesh_compliance.consul import ConsulClient
from mesh_compliance.errors import FixError, Undecided
from mesh_compliance.log import logger
from mesh_compliance.target import Target


@dataclass(frozen=True)
class Restored:
    entry: dict
    restored: bool
    detail: str

    def describe(self) -> str:
        word = "restored" if self.restored else "NOT restored"
        node = self.entry.get("node", "local")
        return f"{word:<13} {self.entry['control']:<28} [{node}] {self.entry['object']}: {self.detail}"


def rollback(entries: list[dict], consul: ConsulClient, targets: dict[str, Target]) -> list[Restored]:
    """Apply the undo of every journal entry in reverse order and report the outcome of each.

    ``targets`` maps node names to their Target. An entry written before
    journals named the node belongs to the node ``local``.
    """
    outcomes = []
    for entry in reversed(entries):
        try:
            outcomes.append(_undo(entry, consul, targets.get(entry.get("node", "local"))))
        except (Undecided, FixError, OSError) as exc:
            logger.warning("rollback of %s failed: %s", entry["object"], exc)
            outcomes.append(Restored(entry, False, f"failed: {exc}"))
    return outcomes


def _undo(entry: dict, consul: ConsulClient, target: Target | None) -> Restored:
    undo = entry.get("undo")
    if not undo:
        return Restored(entry, False, "this change cannot be undone automatically; restore it by hand from 'before'")
    if "catalog_node" in undo:
        return Restored(entry, True, _restore_node(consul, undo["catalog_node"], undo.get("before")))
    if "method" in undo:
        return Restored(entry, True, _replay(consul, undo))
    if target is None:
        return Restored(entry, False, f"node {entry.get('node', 'local')} is not in this run's node list; "
                                      "run --rollback with the --site or --hosts of the fixing run")
    if "restore_file" in undo or "remove_file" in undo:
        return Restored(entry, True, _restore_file(target, undo))
    if "argv" in undo:
        return _rerun(entry, target, undo["argv"])
    return Restored(entry, False, f"unknown undo record {sorted(undo)}")


def _replay(consul: ConsulClient, undo: dict) -> str:
    method, path = undo["method"], undo["path"]
    if "base64" in undo:
        consul.request(method, path, data=base64.b64decode(undo["base64"] or ""))
    else:
        consul.request(method, path, json_body=undo.get("json"))
    return f"{method} {path}"


def _restore_node(consul: ConsulClient, node: str, before: dict | None) -> str:
    if consul.catalog_node(node) is not None:
        consul.catalog_deregister({"Node": node})
    if not before:
        return f"removed node {node}, which did not exist before"

    info = before.get("Node") or {}
    for service in (before.get("Services") or {}).values():
        consul.catalog_register({
            "Node": node, "Address": info.get("Address"), "NodeMeta": info.get("Meta") or {},
            "TaggedAddresses": info.get("TaggedAddresses") or {},
            "Service": {key: service[key] for key in ("ID", "Service", "Port", "Tags", "Meta", "Address") if key in service},
        })
    return f"node {node} registered again with {len(before.get('Services') or {})} service(s) as before"


def _restore_file(target: Target, undo: dict) -> str:
    if "remove_file" in undo:
        node_writes.remove(target, undo["remove_file"])
        return f"removed {undo['remove_file']} on {target.name}, which did not exist before"
    node_writes.restore(target, undo["backup"], undo["restore_file"])
    return f"copied {undo['backup']} back to {undo['restore_file']} on {target.name}"


def _rerun(entry: dict, target: Target, argv: list[str]) -> Restored:
    result = target.run(*argv)
    if result.rc != 0:
        return Restored(entry, False, f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return Restored(entry, True, f"ran {' '.join(argv)}")
