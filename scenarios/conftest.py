"""pytest collection of the scenarios: every scenarios/*.yaml is a test
(test_scenarios.py), every case of the matrix is a test (test_matrix.py),
and every mutant agent must be caught (test_mutants.py).

Run with Debian's Python (it sees python3-pytest):
    OTA_BUILD_DIR=build /usr/bin/python3 -m pytest scenarios
"""
import os
import sqlite3
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("OTA_SOURCE_DIR", os.path.dirname(HERE))
BUILD = os.environ.get("OTA_BUILD_DIR", os.path.join(SRC, "build"))
SIM = os.path.join(BUILD, "sim", "ota-sim")
JOBS = os.environ.get("OTASIM_JOBS", "3")


FULL = os.environ.get("OTA_QEMU_FULL") == "1"


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "qemu_full: a QEMU test of the full set only (make test-qemu-full, "
        "OTA_QEMU_FULL=1); make test runs the smoke set, one test of each kind")


def pytest_collection_modifyitems(config, items):
    """The QEMU tier's full set stays one make target away: without
    OTA_QEMU_FULL=1 its tests are deselected, and the summary names them (make test keeps one test of each
    kind: a cut and recovery, a fallback, a mutant caught, block states with a
    boot, a watchdog reset)."""
    if FULL:
        return
    # deselected, not skipped: a skip fails CI (ci/pytest/ota_ctest.py); the run says so instead
    full = [i for i in items if "qemu_full" in i.keywords]
    if full:
        items[:] = [i for i in items if "qemu_full" not in i.keywords]
        config.hook.pytest_deselected(items=full)
        config._ota_full = [i.name for i in full]


def pytest_terminal_summary(terminalreporter, config):
    names = getattr(config, "_ota_full", None)
    if names:
        terminalreporter.write_line(
            "the full QEMU set (make test-qemu-full, OTA_QEMU_FULL=1) also runs: " +
            ", ".join(names))


def sim(*args, timeout=1800):
    """Runs ota-sim; returns the CompletedProcess (output captured)."""
    return subprocess.run([SIM, *args], capture_output=True, text=True, timeout=timeout)


def scenario_files():
    return sorted(f for f in os.listdir(HERE) if f.endswith(".yaml") and f != "matrix.yaml")


def failed_invariants(db, case_id=None, run_id=None):
    """{case_id: [invariant names that failed]} of a run database."""
    con = sqlite3.connect(db)
    try:
        if run_id is None:
            run_id = con.execute("SELECT max(id) FROM runs").fetchone()[0]
        rows = con.execute(
            "SELECT t.case_id, i.name FROM trials t JOIN invariants i ON i.trial_id = t.id "
            "WHERE t.run_id = ? AND i.ok = 0", (run_id,)).fetchall()
    finally:
        con.close()
    out = {}
    for cid, name in rows:
        if case_id is None or cid == case_id:
            out.setdefault(cid, []).append(name)
    return out


@pytest.fixture(scope="session")
def work(tmp_path_factory):
    """One work dir (release cache, recordings) for the whole session."""
    return str(tmp_path_factory.mktemp("sim-work"))


@pytest.fixture(scope="session")
def aarch64_mutants():
    """mutant(NAME): the path of the aarch64 mutant agent ota-agent-mutant-NAME, built on first use
    (images/build-agent-aarch64 with OTA_AARCH64_MUTANTS=NAME, in the image's own build-aarch64/:
    the mutant shares its libcurl, libarchive and common library)."""
    built = {}

    def mutant(name):
        if name not in built:
            p = subprocess.run([os.path.join(SRC, "images", "build-agent-aarch64")],
                               env={**os.environ, "OTA_AARCH64_MUTANTS": name},
                               capture_output=True, text=True, timeout=1800)
            assert p.returncode == 0, p.stderr[-3000:]
            path = next(l for l in p.stdout.splitlines()
                        if os.path.basename(l) == "ota-agent-mutant-" + name)
            built[name] = os.path.abspath(path)
        return built[name]
    return mutant


@pytest.fixture(scope="session")
def image():
    p = subprocess.run([os.path.join(SRC, "images", "make-image")], capture_output=True,
                       text=True, timeout=3600)
    assert p.returncode == 0, "images/make-image failed:\n" + p.stderr[-4000:]
    out = p.stdout.strip().splitlines()[-1]
    assert os.path.exists(os.path.join(out, "sd.img")), out
    return out
