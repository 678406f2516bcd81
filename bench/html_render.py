#!/usr/bin/env python3
"""Measure how long headless Chromium takes to render a 20,000-row compliance report.

Two reports are built from the same generated pytest session (controls ×
nodes parametrized tests that record the user properties a control records):
one with this project's plugin and its pytest-html hooks, one with plain
pytest-html. Each report is loaded REPEAT times, each time in a fresh
Chromium with a new empty profile, driven over the DevTools protocol on a
pipe (``--remote-debugging-pipe``), so nothing but the file:// URL is loaded.

Times are milliseconds since navigation start, read in the page:
- populated: pytest-html has put the results table with every row in the document;
- painted: the first frame after the load event (layout and paint done).

Usage: .venv/bin/python bench/html_render.py [--rows 20000] [--repeat 5] [--checkout DIR] [--baseline DIR]
``--checkout`` builds the project's report with the package in another
checkout, for example ``git archive`` of a commit unpacked in a directory.
``--baseline`` builds a third report from one more checkout, to compare versions.
``--measure`` only loads reports kept earlier with ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")
CONTROLS = 40

CONFTEST = '''
import json
import pytest

SEVERITIES = ("critical", "high", "medium", "low")


def verdict_of(index):
    return ("PASS", "PASS", "PASS", "WARN", "FAIL", "PASS", "PASS", "ERROR", "PASS", "FAIL")[index % 10]


@pytest.fixture
def control_props(request, record_property):
    """Record what a control records; an ERROR is raised at setup, as the plugin does."""
    control, node = request.param
    index = control * 1000 + node
    verdict = verdict_of(index)
    raw = {"Node": f"gw-{node}", "Service": {"ID": "carbonio-gateway", "Port": 5432,
           "Address": "external-database.example.com", "Meta": {"external-node": "true"}},
           "ModifyIndex": 1000 + index}
    values = {
        "control": f"control-{control:02d}", "title": f"Generated control {control}",
        "severity": SEVERITIES[control % 4], "step": str(control % 14 + 1),
        "rationale": "The gateway needs this state; without it Carbonio Files cannot reach its database.",
        "node": f"gw-{node:05d}", "verdict": verdict,
        "message": "" if verdict == "PASS" else f"port differs: expected 5432, observed {5000 + node}",
        "evidence": json.dumps({"expected": {"port": "5432", "owner": "carbonio-gateway:carbonio-gateway"},
                                "observed": {"port": str(5000 + node), "owner": "root:root"},
                                "raw": {"catalog response": json.dumps(raw, indent=2)},
                                "warnings": ["an expiry time is set"] if verdict == "WARN" else []},
                               sort_keys=True),
        "fix": "",
    }
    for key, value in values.items():
        record_property("mesh_" + key, value)
    if verdict == "ERROR":
        raise RuntimeError("Consul unreachable at http://127.0.0.1:8500: connection refused")
    return values
'''

TEST_MODULE = '''
import pytest

PARAMS = [(control, node) for control in range({controls}) for node in range({nodes})]


@pytest.mark.parametrize("control_props", PARAMS, indirect=True, ids=lambda p: f"c{{p[0]}}-n{{p[1]}}")
def test_control(control_props):
    assert control_props["verdict"] != "FAIL", control_props["message"]
'''


def ensure_chromium() -> None:
    """Install Debian's chromium and chromium-driver with apt-get when Chromium is missing."""
    if Path(CHROMIUM).exists():
        return
    print("installing chromium and chromium-driver with apt-get", file=sys.stderr)
    subprocess.run(["apt-get", "install", "-y", "chromium", "chromium-driver"], check=True)


def generate_session(directory: Path, rows: int) -> None:
    nodes = rows // CONTROLS
    (directory / "conftest.py").write_text(CONFTEST)
    (directory / "test_fleet.py").write_text(TEST_MODULE.format(controls=CONTROLS, nodes=nodes))
    (directory / "pytest.ini").write_text("[pytest]\n")


def build_report(directory: Path, html: Path, with_plugin: bool, checkout: Path) -> float:
    """Run the generated session with pytest-html; return the seconds pytest took."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
               f"--html={html}", "--self-contained-html", "-o", "console_output_style=classic"]
    environment = dict(os.environ)
    if with_plugin and checkout != CHECKOUT:
        # This checkout is installed in the venv; another one is put first on the path.
        environment["PYTHONPATH"] = str(checkout)
    if not with_plugin:
        command += ["-p", "no:mesh_compliance.plugin"]
    started = time.monotonic()
    completed = subprocess.run(command, cwd=directory, capture_output=True, text=True, env=environment)
    elapsed = time.monotonic() - started
    if not html.exists():
        raise RuntimeError(f"pytest wrote no report (exit {completed.returncode}):\n{completed.stdout[-3000:]}"
                           f"{completed.stderr[-3000:]}")
    return elapsed


class DevTools:
    """Chrome DevTools protocol over --remote-debugging-pipe: NUL-terminated JSON on fds 3 and 4."""

    def __init__(self, profile: Path):
        to_browser_read, self._to_browser = os.pipe()
        self._from_browser, from_browser_write = os.pipe()

        def wire_pipes():
            # Copy both ends above 4 first, so that placing one cannot overwrite the other.
            # os.pipe() ends are not inheritable, so only fds 3 and 4 reach Chromium.
            reading, writing = os.dup(to_browser_read), os.dup(from_browser_write)
            os.dup2(reading, 3)
            os.dup2(writing, 4)

        command = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe"]
        self.process = subprocess.Popen(command, close_fds=False, preexec_fn=wire_pipes,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method} failed: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str) -> dict:
        while True:
            for index, event in enumerate(self.events):
                if event.get("method") == method:
                    return self.events.pop(index)
            self.events.append(self._read())

    def _read(self) -> dict:
        while b"\0" not in self._buffer:
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except RuntimeError:
            pass
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)


# Records when pytest-html puts a populated results table into the document.
OBSERVER = """
window.__populated = null;
new MutationObserver((mutations, observer) => {
  const table = document.getElementById('results-table');
  if (table && table.querySelector('tbody.results-table-row')) {
    window.__populated = performance.now();
    observer.disconnect();
  }
}).observe(document, {childList: true, subtree: true});
"""

AFTER_FRAME = """
new Promise((resolve) => requestAnimationFrame(() => setTimeout(() => resolve({
  populated: window.__populated,
  painted: performance.now(),
  rows: document.querySelectorAll('#results-table tbody.results-table-row').length,
}))))
"""


def measure(html: Path) -> dict:
    """Load the report once in a fresh Chromium; return the in-page times and the row count."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        browser = DevTools(Path(profile))
        try:
            page = next(t for t in browser.send("Target.getTargets")["targetInfos"] if t["type"] == "page")
            session = browser.send("Target.attachToTarget", {"targetId": page["targetId"], "flatten": True})["sessionId"]
            browser.send("Page.enable", session=session)
            browser.send("Page.addScriptToEvaluateOnNewDocument", {"source": OBSERVER}, session=session)
            browser.send("Page.navigate", {"url": html.as_uri()}, session=session)
            browser.wait_event("Page.loadEventFired")
            result = browser.send("Runtime.evaluate", {"expression": AFTER_FRAME, "awaitPromise": True,
                                                       "returnByValue": True}, session=session)
            return result["result"]["value"]
        finally:
            browser.close()


def chromium_version() -> str:
    return subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True).stdout.strip()


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory = next(line.split(":", 1)[1].strip() for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal"))
    return f"{cpu}, {os.cpu_count()} CPUs, {memory} RAM, {platform.platform()}"


def report_times(reports: dict[str, Path], repeat: int) -> None:
    """Load each report ``repeat`` times, alternating between reports, and print the medians."""
    samples = {name: [] for name in reports}
    for _ in range(repeat):
        for name, html in reports.items():
            samples[name].append(measure(html))
    for name, runs in samples.items():
        rows = sorted({run["rows"] for run in runs})
        populated = [run["populated"] for run in runs]
        painted = [run["painted"] for run in runs]
        print(f"{name}: {reports[name].stat().st_size / 1e6:.1f} MB, rows {rows}; "
              f"populated ms {[round(value) for value in populated]} median {statistics.median(populated):.0f}; "
              f"painted ms {[round(value) for value in painted]} median {statistics.median(painted):.0f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=20000, help="report rows (default 20000)")
    parser.add_argument("--repeat", type=int, default=5, help="loads per report (default 5)")
    parser.add_argument("--checkout", type=Path, default=CHECKOUT,
                        help="checkout whose mesh_compliance package builds the project's report")
    parser.add_argument("--baseline", type=Path,
                        help="another checkout (an older commit) whose report is measured as well, as 'baseline'")
    parser.add_argument("--keep", type=Path, help="copy the reports to this directory")
    parser.add_argument("--measure", type=Path, nargs="+", metavar="HTML",
                        help="only load these reports (kept with --keep earlier), named by file name")
    args = parser.parse_args()

    ensure_chromium()
    import pytest_html

    print(f"machine: {machine()}")
    print(f"{chromium_version()}; pytest-html {pytest_html.__version__}; Python {platform.python_version()}")
    if args.measure:
        report_times({html.stem: html.resolve() for html in args.measure}, args.repeat)
        return 0
    with tempfile.TemporaryDirectory(prefix="html-render-") as work:
        work = Path(work)
        generate_session(work, args.rows)
        reports = {"project": work / "project.html", "default": work / "default.html"}
        checkouts = {"project": args.checkout.resolve()}
        if args.baseline:
            reports["baseline"] = work / "baseline.html"
            checkouts["baseline"] = args.baseline.resolve()
        for name, html in reports.items():
            seconds = build_report(work, html, name in checkouts, checkouts.get(name, CHECKOUT))
            print(f"{name}: pytest {seconds:.1f} s, {html.stat().st_size / 1e6:.1f} MB")
        report_times(reports, args.repeat)
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for html in reports.values():
                shutil.copy(html, args.keep / html.name)
    return 0


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)
    sys.exit(main())
