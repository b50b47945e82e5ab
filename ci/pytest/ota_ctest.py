"""pytest plugin for the CTest entries (-p ota_ctest): a test that did not run must not
look like a pass.

pytest exits 0 when some tests were skipped, and CTest then shows the whole entry
(pytest-agent-e2e, pytest-matrix, ...) as passed. With this plugin:

- a session with no failure but at least one skip prints every skip reason and exits 77;
  the CTest entries set SKIP_RETURN_CODE 77, so CTest lists them as "Skipped"
  ("The following tests did not run") instead of passed;
- with CI=true, a skip is a failure: a tool, a build target or a privilege the test needs
  is missing on a CI machine, which ci/install-deps and .ci/run must provide. An empty
  parameter set (e.g. the matrix's cases when ota-sim is missing) is a skip too, so it
  fails in CI as well; a session that collected nothing already exits 5.

A test that ran and whose result is known from another one is not a gap: a skip whose
reason starts with one of ANSWERED_ELSEWHERE is listed but neither exits 77 nor fails.

Used by the CTest entries only (CMakeLists.txt: OTA_PYTEST); pytest run by hand behaves as
usual. ci/tests/test_ota_ctest.py shows it at work, CTest summary included.
"""
import os

import pytest

SKIP_EXIT = 77
# Skip reasons that report a result obtained another way, not a test left out.
ANSWERED_ELSEWHERE = ("equivalent to",)

_skips = []  # (nodeid, reason) of the skips that count
_noted = []  # (nodeid, reason) of the skips answered elsewhere


def _in_ci():
    return os.environ.get("CI", "").lower() == "true"


def _reason(report):
    lr = report.longrepr
    if isinstance(lr, tuple) and len(lr) == 3:
        reason = lr[2]
    else:
        reason = str(lr)
    return reason[len("Skipped: "):] if reason.startswith("Skipped: ") else reason


def _answered_elsewhere(reason):
    return reason.startswith(ANSWERED_ELSEWHERE)


def _judge(report):
    """Records a skip report; in CI turns one that counts into a failure."""
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = _reason(report)
    if _answered_elsewhere(reason):
        _noted.append((report.nodeid, reason))
        return
    if _in_ci():
        report.outcome = "failed"
        report.longrepr = (f"skipped, and CI=true: a test that cannot run is a failure here "
                           f"(install what it needs: ci/install-deps): {reason}")
        return
    _skips.append((report.nodeid, reason))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _judge(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _judge(outcome.get_result())


def pytest_terminal_summary(terminalreporter):
    tr = terminalreporter
    for nodeid, reason in _noted:
        tr.write_line(f"ANSWERED ELSEWHERE {nodeid}: {reason}")
    if not _skips:
        return
    tr.write_sep("=", f"{len(_skips)} test(s) did not run (not a pass)")
    for nodeid, reason in _skips:
        tr.write_line(f"SKIPPED {nodeid}: {reason}")


def pytest_sessionfinish(session, exitstatus):
    # Only a clean session becomes "skipped": a failure or an error keeps its own status.
    # A module skipped whole leaves nothing collected (exit 5): that too is a skip.
    if _skips and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = SKIP_EXIT
