"""JUnit XML: the control, severity and verdict of each testcase as properties.

pytest's ``--junitxml`` writes a testcase's properties from its teardown
report, but the verdict is on the setup or call report. This plugin copies
the final values onto the teardown report.
"""

from __future__ import annotations

import pytest

from mesh_compliance.results import properties

JUNIT_PROPERTIES = ("control", "severity", "verdict")
VERDICT_REPORT = pytest.StashKey[object]()


class JUnitProperties:
    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item, call):
        report = yield
        if report.when != "teardown":
            if properties(report):
                # Keep the report itself: a waiver may still change its verdict.
                item.stash[VERDICT_REPORT] = report
            return report

        annotated = item.stash.get(VERDICT_REPORT, None)
        if annotated is not None:
            props = properties(annotated)
            report.user_properties.extend((name, props[name]) for name in JUNIT_PROPERTIES if name in props)
        return report
