"""Fixer for the gateway unit as systemd loads it."""

from __future__ import annotations

from mesh_compliance.errors import FixError
from mesh_compliance.fixing import FixContext
from mesh_compliance.gateway_unit import findings, shadows
from mesh_compliance.systemd import Layer, load_unit, read_layers
from mesh_compliance.units import UnitParseError
from remediations.unit_files import live_systemd, move_aside, systemctl

OPT_IN = "remove-unit-override"


def fix_loaded_unit(ctx: FixContext) -> None:
    """Move aside the admin copies and drop-ins that change ExecStart or User, then reload systemd.

    Each pass moves aside the files that caused the differences found, so a
    drop-in hidden behind a later one is found on the next pass. Removing a
    file needs --allow remove-unit-override. A difference in the documented
    fragment itself is left to the gateway-unit fixer.
    """
    site = ctx.site
    target = ctx.require_target()
    live = live_systemd(target)

    # Every pass removes at least one file, so the passes end; the bound is a safety net.
    for _ in range(20):
        culprits = _culprits(ctx)
        if not culprits:
            break
        ctx.require_opt_in(OPT_IN)
        for layer in culprits:
            backup = move_aside(ctx, layer.path)
            ctx.changed(f"{layer.kind} {layer.path}", "moved aside", f"kept as {backup}")
        if live:
            systemctl(ctx, "daemon-reload")
            ctx.changed("systemd", "reloaded unit files")
            systemctl(ctx, "try-restart", site.gateway.unit)
            ctx.changed(f"unit {site.gateway.unit}", "restarted if it was running")
        if ctx.dry_run:
            # Nothing moved, so another pass would find the same files again.
            break

    if live and load_unit(target, site.gateway.unit).need_daemon_reload:
        systemctl(ctx, "daemon-reload")
        ctx.changed("systemd", "reloaded unit files", "the loaded unit differed from its files")


def _culprits(ctx: FixContext) -> list[Layer]:
    site = ctx.site
    target = ctx.require_target()
    try:
        loaded = load_unit(target, site.gateway.unit)
        layers = read_layers(target, loaded)
    except UnitParseError as exc:
        raise FixError(f"unit {site.gateway.unit} cannot be parsed, so no file is moved: {exc}") from exc

    culprits: list[Layer] = []
    for finding in findings(loaded, layers, site):
        layer = finding.cause.layer if finding.cause else None
        if layer is None or layer in culprits:
            continue
        if layer.kind == "drop-in":
            culprits.append(layer)
        elif shadows(layer.path, site.gateway.unit_path):
            _require_documented(ctx, layer)
            culprits.append(layer)
    return culprits


def _require_documented(ctx: FixContext, admin_copy: Layer) -> None:
    documented = ctx.site.gateway.unit_path
    if not ctx.require_target().file_state(documented).exists:
        raise FixError(
            f"{documented} does not exist, so moving {admin_copy.path} aside would leave no unit; "
            "run the gateway-unit fixer first"
        )
