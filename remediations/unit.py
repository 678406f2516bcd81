"""Fixer for the gateway's systemd unit."""

from mesh_compliance.errors import FixError
from mesh_compliance.expected import unit_text
from mesh_compliance.fixing import FixContext


def fix_unit(ctx: FixContext) -> None:
    """Write the documented unit file when it differs, reload systemd, enable the unit."""
    site = ctx.site
    target = ctx.require_target()
    wanted = unit_text(site)

    if target.read_text(site.gateway.unit_path) != wanted:
        backup = ctx.keep_file(site.gateway.unit_path)
        ctx.write_file(site.gateway.unit_path, wanted, owner="root", group="root", mode=0o644)
        ctx.changed(f"unit file {site.gateway.unit_path}", "wrote", f"previous file kept as {backup}" if backup else "")
        if not target.root:
            _systemctl(target, "daemon-reload")
            ctx.changed("systemd", "reloaded unit files")

    if target.unit_enabled_state(site.gateway.unit) != "enabled":
        _systemctl(target, "enable", site.gateway.unit)
        ctx.changed(f"unit {site.gateway.unit}", "enabled")


def _systemctl(target, *args: str) -> None:
    result = target.systemctl(*args)
    if result.rc != 0:
        raise FixError(f"systemctl {' '.join(args)} failed on {target.name}: {result.stderr.strip()}")
