"""The state x fault matrix and the persistence-point enumeration, one test
per case. Collection asks `ota-sim matrix --list` (which records the
persistence points of one update cycle, cached for the run); the whole
matrix then runs once, in parallel, and each test reads its case's row from
the run database. A crash point answered by equivalence (its result copied
from the trial of an earlier point whose crash state cannot differ) was not
run: its test is skipped with "equivalent to CASE", not counted as a pass."""
import os
import sqlite3

import pytest

from conftest import BUILD, JOBS, SIM, failed_invariants, sim

WORK = os.path.join(BUILD, "sim-work-pytest")


def cases():
    if not os.path.exists(SIM):
        return []
    r = sim("matrix", "--list", "--work", WORK, timeout=600)
    if r.returncode != 0:
        return [f"LIST-FAILED: {r.stderr.strip()[-300:]}"]
    return [line for line in r.stdout.splitlines() if line]


@pytest.fixture(scope="module")
def matrix_db(tmp_path_factory):
    db = str(tmp_path_factory.mktemp("matrix") / "runs.db")
    r = sim("matrix", "-q", "-j", JOBS, "--work", WORK, "--db", db, timeout=3000)
    assert r.returncode in (0, 1), f"ota-sim matrix: exit {r.returncode}\n{r.stderr[-3000:]}"
    return db


@pytest.mark.parametrize("case_id", cases())
def test_case(case_id, matrix_db):
    assert not case_id.startswith("LIST-FAILED"), case_id
    con = sqlite3.connect(matrix_db)
    try:
        row = con.execute(
            "SELECT outcome, detail, reproduce, equivalent_to FROM trials WHERE case_id = ? "
            "AND run_id = (SELECT max(id) FROM runs)", (case_id,)).fetchone()
    finally:
        con.close()
    assert row is not None, f"{case_id} was not run"
    outcome, detail, reproduce, equivalent_to = row
    if equivalent_to:
        # Not run: a crash point whose state cannot differ from an earlier
        # one's got that trial's result. Its verdict is that case's test.
        if outcome != "pass":
            pytest.fail(f"{case_id}: {outcome} (copied: equivalent to {equivalent_to}): {detail}")
        pytest.skip(f"equivalent to {equivalent_to}")
    bad = failed_invariants(matrix_db, case_id).get(case_id, [])
    assert outcome == "pass", f"{case_id}: {outcome}: {detail}\n invariants: {bad}\n reproduce: {reproduce}"
