"""Test-only pytest plugin, loaded with ``-p tests.planted_secret_plugin``.

It registers a marker as a secret and writes that marker into the summary
of the HTML report. pytest-html writes the report at the end of the session,
so the secret scan finds the marker only if it reads the report after
pytest-html has written it.
"""

from mesh_compliance.redact import register_secret

MARKER = "planted-secret-7c1e04b9"
KIND = "planted test secret"


def pytest_configure(config):
    register_secret(MARKER, KIND)


def pytest_html_results_summary(prefix, summary, postfix):
    prefix.append(f"<p>{MARKER}</p>")
