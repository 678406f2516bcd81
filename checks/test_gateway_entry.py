"""Gateway config entry control."""

from mesh_compliance.controls import control
from mesh_compliance.expected import linked_service


@control(
    "gateway-config-entry",
    title="Terminating-gateway config entry links the DB service",
    severity="high",
    step="9-10",
    scope="cluster",
    rationale="Only services listed in the gateway's config entry are served; the entry also "
              "carries the TLS options the gateway uses toward the database.",
)
def test_gateway_config_entry(site, consul, evidence):
    name = site.gateway.service
    expected = linked_service(site)
    evidence.expect("entry", f"terminating-gateway/{name}")
    evidence.expect("linked service", expected)

    entry = consul.config_entry("terminating-gateway", name)
    evidence.observe("entry", "found" if entry else "not found")
    assert entry is not None, evidence.why(f"config entry terminating-gateway/{name} does not exist")

    services = entry.get("Services") or []
    evidence.record(f"GET /v1/config/terminating-gateway/{name}", {"Services": services})
    evidence.observe("linked services", [item.get("Name") for item in services])
    matches = [item for item in services if item.get("Name") == expected["Name"]]
    assert matches, evidence.why(f"config entry terminating-gateway/{name} does not link {expected['Name']}")

    item = matches[0]
    for key in ("CAFile", "SNI"):
        if key in expected:
            evidence.observe(key, item.get(key, "unset"))
            assert item.get(key) == expected[key], evidence.why(
                f"{key} of {expected['Name']} is {item.get(key, 'unset')!r}, expected {expected[key]!r}")
