"""Fixer for the gateway's systemd unit."""

from mesh_compliance.expected import unit_text
from mesh_compliance.fixing import FixContext


def fix_unit(ctx: FixContext) -> None:
    """Write the documented unit file when it differs, reload systemd, enable the unit."""
    site = ctx.site
    target = ctx.require_target()
    wanted = unit_text(site)

    if target.read_text(site.gateway.unit_path) != wanted:
        backup = ctx.write_file(site.gateway.unit_path, wanted, owner="root", group="root", mode=0o644)
        ctx.changed(f"unit file {site.gateway.unit_path}", "wrote", f"previous file kept as {backup}" if backup else "")
        if not target.root:
            ctx.systemctl("daemon-reload")
            ctx.changed("systemd", "reloaded unit files")

    if target.unit_enabled_state(site.gateway.unit) != "enabled":
        ctx.systemctl("enable", site.gateway.unit, undo=("disable", site.gateway.unit))
        ctx.changed(f"unit {site.gateway.unit}", "enabled")

