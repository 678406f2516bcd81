"""Fixer for packages that must be absent."""

from mesh_compliance.fixing import FixContext
from mesh_compliance.packages import detect_manager, package_state


def fix_absent(ctx: FixContext) -> None:
    """Purge each package that must be absent; only with --allow remove-package.

    A package removed with its configuration files left is purged too, so
    its Consul service definition goes with it.
    """
    ctx.require_opt_in("remove-package")
    target = ctx.require_target()
    manager = detect_manager(target, ctx.site.packages.manager)

    for name in ctx.site.packages.absent:
        state = package_state(target, name, manager)
        if not (state.present or state.config_files_only):
            continue
        argv = _purge_command(target, manager, name)
        ctx.run(*argv)
        ctx.changed(f"package {name}", "purged", f"was {state.status}")


def _purge_command(target, manager: str, name: str) -> tuple[str, ...]:
    if manager == "rpm":
        return ("rpm", *target.rpm_root_args(), "-e", name)
    return ("dpkg", *target.dpkg_root_args(), "--purge", name)
