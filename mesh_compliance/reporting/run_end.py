"""What happens after every report is written: secret scan, textfile, Nagios line.

pytest-html and JUnit XML write their files in ``pytest_sessionfinish``, and
the suite sets its exit code there. A hook wrapper resumes only after every
plain implementation of that hook has returned, trylast ones included, so
the code after its ``yield`` reads the finished files and the suite's exit
code, and can still change ``session.exitstatus``, which pytest returns.

``--nagios`` is pytest-testinfra's option. Testinfra then sends pytest's
terminal output to a temporary file and, in its own ``pytest_sessionfinish``,
prints a "TESTINFRA" line that counts pytest outcomes only (an ERROR and a
WARN are not told apart). This plugin takes that reporter out before it runs
and prints the suite's own status line first, then the spooled output as the
long output, as Nagios reads it.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import pytest

from mesh_compliance.log import logger
from mesh_compliance.reporting import monitoring, secretscan

# NOTE: the plugin name and its ``out`` attribute are pytest-testinfra 10's
# internals. Should they change, testinfra's own line and exit code come first,
# and this line then starts from testinfra's code instead of the suite's.
TESTINFRA_NAGIOS_REPORTER = "nagiosreporter"


class RunEnd:
    """Plugin that finishes a run once its artifacts are on disk."""

    def __init__(self, config: pytest.Config, run):
        self.config = config
        self.run = run
        self.textfile = config.option.mesh_prometheus_textfile
        self.nagios = bool(getattr(config.option, "nagios", False))

    # tryfirst puts this wrapper outside the terminal reporter's, so pytest's
    # summary is complete (spooled under --nagios) before the code after yield runs.
    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_sessionfinish(self, session):
        if hasattr(self.config, "workerinput"):
            # An xdist worker: the controlling process keeps the records and writes the files.
            return (yield)

        spooled = self._take_over_testinfra_nagios() if self.nagios else None
        result = yield
        code = self._scan_and_publish(int(session.exitstatus))
        if self.nagios:
            code = self._print_nagios(code, spooled)
        session.exitstatus = code
        return result

    def _take_over_testinfra_nagios(self):
        """Unregister testinfra's Nagios reporter; return the file that contains pytest's output."""
        reporter = self.config.pluginmanager.get_plugin(TESTINFRA_NAGIOS_REPORTER)
        if reporter is None:
            return None
        self.config.pluginmanager.unregister(reporter)
        return getattr(reporter, "out", None)

    def _scan_and_publish(self, code: int) -> int:
        leaks = secretscan.scan(secretscan.artifacts(self.config, self.run))
        code = monitoring.EXIT_SECRET_LEAKED if leaks else code

        if self.textfile:
            path = Path(self.config.invocation_params.dir, self.textfile)
            written = self._write_textfile(path, code)
            own = secretscan.scan([secretscan.Artifact("Prometheus textfile", path)]) if written else []
            if own and not leaks:
                code = monitoring.EXIT_SECRET_LEAKED
                self._write_textfile(path, code)
            leaks += own

        for leak in leaks:
            sys.stderr.write(leak.describe() + "\n")
        sys.stderr.flush()
        return code

    def _write_textfile(self, path: Path, code: int) -> bool:
        """Write the textfile; a failed write is reported and leaves the exit code alone."""
        text = monitoring.render_textfile(self.run.records, code, time.time())
        try:
            monitoring.write_atomically(path, text)
        except OSError as exc:
            # The stale timestamp in the old file (if any) is what monitoring alerts on.
            sys.stderr.write(f"cannot write the Prometheus textfile {path}: {exc.strerror or exc}\n")
            return False
        logger.debug("wrote the Prometheus textfile %s", path)
        return True

    def _print_nagios(self, code: int, spooled) -> int:
        state, line = monitoring.nagios_line(self.run.records, code)
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
        if spooled is not None:
            spooled.seek(0)
            shutil.copyfileobj(spooled, sys.stdout.buffer)
            sys.stdout.buffer.flush()
        return state
