"""Package control: packages the external-DB setup requires to be absent."""

import posixpath

from mesh_compliance.controls import control
from mesh_compliance.packages import detect_manager, package_state


@control(
    "files-db-package-absent",
    title="carbonio-files-db is not installed",
    severity="high",
    step="14",
    scope="node",
    roles=("*",),
    rationale="The package registers its own carbonio-files-db service and sidecar, which "
              "competes with the external service for Files' database traffic.",
)
def test_files_db_package_absent(site, target, evidence):
    manager = detect_manager(target, site.packages.manager)
    evidence.expect("packages absent", list(site.packages.absent))
    evidence.observe("package manager", manager)

    states = [package_state(target, name, manager) for name in site.packages.absent]
    for state in states:
        evidence.observe(state.name, state.status)
        evidence.record(state.name, state.evidence)

    present = [f"{state.name} ({state.status})" for state in states if state.present]
    assert not present, evidence.why(f"packages present on {target.name}: {', '.join(present)}")

    leftovers = [state.name for state in states if state.config_files_only]
    definitions = [path for path in (_service_definition(site, name) for name in leftovers) if target.file_state(path).exists]
    evidence.observe("service definitions left", definitions or "none")
    assert not definitions, evidence.why(
        f"removed but not purged, and the Consul service definition is still on disk: {', '.join(definitions)}; "
        "the local agent registers the service again on every reload")
    if leftovers:
        evidence.warn(f"removed but not purged, configuration files remain: {', '.join(leftovers)}")


def _service_definition(site, package: str) -> str:
    # NOTE: Carbonio packages name their service definition after the
    # package (carbonio-files-db.hcl); a package that names it otherwise is
    # only reported through its config-files state.
    return posixpath.join(site.node.service_config_dir, f"{package}.hcl")


def _installed(site, target, evidence, wanted: tuple[str, ...]) -> None:
    manager = detect_manager(target, site.packages.manager)
    evidence.expect("packages installed", list(wanted))
    evidence.observe("package manager", manager)

    states = [package_state(target, name, manager) for name in wanted]
    for state in states:
        evidence.observe(state.name, state.status)
        evidence.record(state.name, state.evidence)

    missing = [f"{state.name} ({state.status})" for state in states if state.status not in ("install ok installed", "installed")]
    assert not missing, evidence.why(f"packages not installed on {target.name}: {', '.join(missing)}")


@control(
    "files-node-packages",
    title="Files nodes run carbonio-files-ce, carbonio-storages-ce and carbonio-user-management",
    severity="medium",
    step="14",
    scope="node",
    roles=("files",),
    rationale="The Files nodes serve Carbonio Files against the external database; a missing or "
              "broken package there leaves the external database unused.",
)
def test_files_node_packages(site, target, evidence):
    _installed(site, target, evidence, site.packages.files_nodes)


@control(
    "proxy-node-packages",
    title="Proxy nodes run carbonio-files-ui",
    severity="medium",
    step="14",
    scope="node",
    roles=("proxy",),
    rationale="The Proxy nodes serve the Files web interface.",
)
def test_proxy_node_packages(site, target, evidence):
    _installed(site, target, evidence, site.packages.proxy_nodes)
