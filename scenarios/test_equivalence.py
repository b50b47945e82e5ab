"""The persistence-point enumeration's equivalence claim, point by point.

A reduced run (`ota-sim matrix`) runs one trial per class of crash points
that cannot differ (no fsync, sync or message to the server since the class's
first point) and copies that trial's result to the others. Here the same
points of the app update cycle also run --exhaustive (every point its own
trial) and every point's outcome must be the same both ways: the verdict,
the failed invariants, the final version, slot and report. The same check
holds the trial's cheaper steps to the old ones (OTASIM_BASELINE=1).

With the real agent every point passes, which would make "the same" cheap;
so a mutant agent whose bug only some crash points expose runs too (a test
build has them: OTA_MUTANTS=ON), and the test asserts it has points that
fail and points that pass, so the comparison can go wrong.
"""
import os
import sqlite3
import subprocess
import xml.etree.ElementTree as ET

import pytest

from conftest import BUILD, HERE, JOBS, SIM

WORK = os.path.join(BUILD, "sim-work-pytest")
# a power cut between the `current` rename and the directory's fsync: only
# points in that window lose the switch (the mutant skips the fsync)
MUTANT = "switch-no-dirsync"


def matrix_file(tmp_path):
    m = tmp_path / "app-points.yaml"
    m.write_text("matrix:\n"
                 f"  - scenario: {os.path.relpath(os.path.join(HERE, 'app-update-good.yaml'), tmp_path)}\n"
                 "    kinds: [power-cut]\n"
                 "    points: all\n"
                 # ota-sim wants every entry's expectation (as sim/bench/points.yaml)
                 "    expect: progress\n"
                 "    unless:\n"
                 "      - found: [HEALTH_CHECK]\n"
                 "        expect: rollback\n"
                 "        why: an interrupted health window cannot vouch for the release\n")
    return str(m)


def outcomes(db):
    """{case_id: (outcome, failed invariants, version, slot, report)}, and
    {case_id: the case it was copied from} of the last run in db."""
    con = sqlite3.connect(db)
    try:
        rid = con.execute("SELECT max(id) FROM runs").fetchone()[0]
        rows = con.execute(
            "SELECT id, case_id, outcome, final_version, final_slot, final_report, equivalent_to "
            "FROM trials WHERE run_id = ?", (rid,)).fetchall()
        bad = {}
        for tid, name in con.execute(
                "SELECT trial_id, name FROM invariants WHERE ok = 0 AND trial_id IN "
                "(SELECT id FROM trials WHERE run_id = ?)", (rid,)):
            bad.setdefault(tid, set()).add(name)
    finally:
        con.close()
    out, copied = {}, {}
    for tid, case, outcome, ver, slot, rep, eq in rows:
        out[case] = (outcome, tuple(sorted(bad.get(tid, ()))), ver, slot, rep)
        if eq:
            copied[case] = eq
    return out, copied


def run(tmp_path, agent, name, *extra, baseline=False):
    db = str(tmp_path / f"{name}.db")
    env = dict(os.environ)
    env.pop("OTASIM_BASELINE", None)
    if baseline:
        env["OTASIM_BASELINE"] = "1"
    r = subprocess.run([SIM, "matrix", "--matrix", matrix_file(tmp_path), "-q", "-j", JOBS,
                        "--work", WORK, "--db", db, "--agent", agent, *extra],
                       capture_output=True, text=True, timeout=900, env=env)
    assert r.returncode in (0, 1), f"ota-sim matrix {' '.join(extra)}: exit {r.returncode}\n{r.stderr[-3000:]}"
    return outcomes(db)


def differences(reduced, exhaustive, names=("reduced", "exhaustive")):
    """The points whose outcome differs, as printable lines."""
    lines = []
    for case in sorted(set(reduced) | set(exhaustive), key=lambda c: int(c.rsplit(":", 1)[-1])):
        a, b = reduced.get(case), exhaustive.get(case)
        if a != b:
            lines.append(f"{case}: {names[0]} {a} / {names[1]} {b}")
    return lines


AGENTS = {"real": os.path.join(BUILD, "agent", "ota-agent"),
          MUTANT: os.path.join(BUILD, "agent", f"ota-agent-mutant-{MUTANT}")}


_exhaustive = {}


def exhaustive_run(agent, tmp_path):
    """The --exhaustive run of agent, once per session (both tests use it)."""
    if agent not in _exhaustive:
        _exhaustive[agent] = run(tmp_path, AGENTS[agent], "exhaustive", "--exhaustive")
    return _exhaustive[agent]


def agent_path(agent):
    path = AGENTS[agent]
    if not os.path.exists(path):
        pytest.fail(f"{path} not built (a test build: OTA_MUTANTS=ON)")
    return path


@pytest.mark.parametrize("agent", sorted(AGENTS))
def test_reduced_equals_exhaustive(agent, tmp_path):
    path = agent_path(agent)
    junit = tmp_path / "reduced.xml"
    reduced, copied = run(tmp_path, path, "reduced", "--junit", str(junit))
    exhaustive, copied_ex = exhaustive_run(agent, tmp_path)
    # JUnit, like pytest: a passed copy is skipped ("equivalent to CASE"), not a pass
    skipped = {}
    for tc in ET.parse(junit).getroot().iter("testcase"):
        sk = tc.find("skipped")
        if sk is not None:
            skipped[tc.get("name")] = sk.get("message")
    assert skipped == {c: f"equivalent to {rep}" for c, rep in copied.items()
                       if reduced[c][0] == "pass"}
    assert not copied_ex, f"--exhaustive copied results: {sorted(copied_ex)[:5]}"
    assert copied, "the reduced run copied nothing: no equivalence to check"
    assert len(copied) < len(reduced)
    assert set(reduced) == set(exhaustive), "the two runs have different points"
    # a copy names a case of the same run that was run itself
    for case, rep in copied.items():
        assert rep in reduced and rep not in copied, f"{case} copied from {rep}"
    diff = differences(reduced, exhaustive)
    assert not diff, "reduced and exhaustive runs disagree:\n" + "\n".join(diff)
    verdicts = {v[0] for v in exhaustive.values()}
    if agent == "real":
        assert verdicts == {"pass"}, f"the real agent: {verdicts}"
    else:
        # the comparison must be able to go wrong: failing and passing points
        assert verdicts >= {"pass", "fail"}, f"{agent}: verdicts {verdicts}, want both"
    print(f"{agent}: {len(reduced)} points, {len(reduced) - len(copied)} run reduced, "
          f"{len(copied)} copied, all equal to --exhaustive")


def test_cheaper_steps_keep_every_verdict(tmp_path):
    """The trial's cheaper steps (otasim/fast.h: ota-sim-svc, the in-process
    tree copy, posix_spawn) against the old ones (OTASIM_BASELINE=1), every
    point of the app cycle run both ways with the mutant (verdicts differ by
    point, so a step that changed one would show)."""
    path = agent_path(MUTANT)
    new, _ = exhaustive_run(MUTANT, tmp_path)
    old, _ = run(tmp_path, path, "baseline", "--exhaustive", baseline=True)
    diff = differences(old, new, ("old", "new"))
    assert not diff, "old and new trial steps disagree:\n" + "\n".join(diff)
    assert {v[0] for v in new.values()} >= {"pass", "fail"}


def test_differences_are_found():
    """The comparison itself: a point whose outcome differs is reported."""
    a = {"x/power-cut@point:1": ("pass", (), "2.0.0", "b", "success"),
         "x/power-cut@point:2": ("pass", (), "2.0.0", "b", "success")}
    b = dict(a)
    assert differences(a, b) == []
    b["x/power-cut@point:2"] = ("fail", ("running-version",), "1.0.0", "a", "failure")
    assert len(differences(a, b)) == 1 and "point:2" in differences(a, b)[0]
    del b["x/power-cut@point:2"]
    assert differences(a, b)
