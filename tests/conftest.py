"""Shared fixtures: labs to run the suite against, and a state editor for them."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.labstate import LabState
from tests.suite import run_suite

# Every opt-in kind a repair of the seeded lab needs.
ALL_OPT_INS = ("--allow=remove-package", "--allow=create-db-role", "--allow=deregister-service")

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the lab runs useradd --root and dpkg --root, which need root")


@pytest.fixture(scope="session")
def lab_parent():
    """A directory every user can search, since the lab's PostgreSQL runs as nobody."""
    path = Path(tempfile.mkdtemp(prefix="mesh-compliance-test-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _start(parent: Path, name: str):
    from mesh_compliance.lab import Lab

    return Lab.up(parent / name)


@pytest.fixture(scope="module")
def drifted_lab(lab_parent, request):
    """A fresh lab in the seeded drifted state, for one test module."""
    lab = _start(lab_parent, f"drifted-{request.module.__name__.rsplit('.', 1)[-1]}")
    yield lab
    lab.down()


@pytest.fixture(scope="session")
def compliant_lab(lab_parent, tmp_path_factory):
    """A lab repaired once with --fix; tests that change it restore it."""
    lab = _start(lab_parent, "compliant")
    run = run_suite(lab, tmp_path_factory.mktemp("repair"), "--fix", *ALL_OPT_INS)
    if run.code != 0:
        lab.down()
        pytest.fail(f"the lab could not be repaired (exit {run.code}):\n{run.output[-4000:]}")
    yield lab
    lab.down()


@pytest.fixture
def state(compliant_lab):
    """Editor for the compliant lab that undoes every change at the end of the test."""
    editor = LabState(compliant_lab)
    yield editor
    editor.restore()


@pytest.fixture
def suite(compliant_lab, tmp_path):
    """Run the suite against the compliant lab."""
    def run(*args, **kwargs):
        return run_suite(compliant_lab, tmp_path, *args, **kwargs)
    return run
