"""The harness must be able to fail: each mutant agent (a test build with
one known bug, agent/CMakeLists.txt) must be caught by the matrix plus the
scenario files, and by one of the invariants named here."""
import os

import pytest

from conftest import BUILD, HERE, JOBS, failed_invariants, sim

WORK = os.path.join(BUILD, "sim-work-pytest")

# mutant -> the invariants any one of which names the bug. state-after-switch:
# a cut between the rename and the SWITCHING save leaves INSTALLING in the
# journal with `current` already on b; the install driver refuses to wipe the
# active slot, so the agent reports "failure" while the device runs the
# unchecked 2.0.0 -> truthful-report (active-slot-untouched if the driver's
# guard were gone too).
MUTANTS = {
    "switch-no-dirsync": {"running-version", "one-active-slot", "active-slot-complete"},
    "state-after-switch": {"truthful-report", "active-slot-untouched"},
    "success-before-commit": {"truthful-report"},
    "install-no-fsync": {"active-slot-complete", "bootable"},
    "commit-before-health": {"fault-fired", "bootable", "expected-outcome", "truthful-report"},
}


@pytest.mark.parametrize("mutant", sorted(MUTANTS))
def test_mutant_is_caught(mutant, tmp_path):
    agent = os.path.join(BUILD, "agent", f"ota-agent-mutant-{mutant}")
    if not os.path.exists(agent):
        pytest.fail(f"{agent} not built (OTA_MUTANTS=ON)")
    db = str(tmp_path / "runs.db")
    # The whole run, not --fail-fast: a mutant is caught when one of the named
    # invariants fails anywhere; a failure that is not the mutant's cannot
    # end the run before the real catch.
    r = sim("matrix", "-q", "-j", JOBS, "--work", WORK, "--db", db, "--agent", agent,
            "--with-scenarios", HERE, timeout=3000)
    assert r.returncode == 1, f"mutant {mutant} was not caught (exit {r.returncode})\n{r.stderr[-2000:]}"
    caught = set()
    for names in failed_invariants(db).values():
        caught.update(names)
    assert caught & MUTANTS[mutant], f"{mutant}: caught by {sorted(caught)}, expected one of {sorted(MUTANTS[mutant])}"
    print(f"{mutant}: caught by {sorted(caught)}")
