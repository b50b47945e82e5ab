"""Debian 12's swupdate under the harness (the swupdate adapter,
docs/agents.md): every scenario of scenarios/swupdate/ passes, the
swupdate matrix (every state it shows, every persistence point of the
update, seed 003's commit included, on the single and the redundant env)
passes but for the cases where it catches swupdate itself, the known SWUpdate
weaknesses are where docs/swupdate.md says they are, and three broken device sides are caught,
each by the invariant named. Skipped where swupdate is not installed or no
mount namespace can be made (the adapter gives each device its own /etc)."""
import os
import re
import shutil
import sqlite3
import subprocess
import warnings

import pytest

from conftest import BUILD, HERE, JOBS, SIM, failed_invariants, sim

SW = os.path.join(HERE, "swupdate")
WORK = os.path.join(BUILD, "sim-work-pytest-swupdate")


def usable():
    if not os.path.exists(SIM):
        return "ota-sim is not built"
    if not os.path.exists("/usr/bin/swupdate") or not shutil.which("fw_setenv"):
        return "swupdate and libubootenv-tool are needed (ci/install-deps)"
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        return "no mount namespace here (the adapter needs one per device)"
    return None


pytestmark = pytest.mark.skipif(usable() is not None, reason=usable() or "")


def scenario_names():
    return sorted(f[:-5] for f in os.listdir(SW) if f.endswith(".yaml") and f != "matrix.yaml")


@pytest.fixture(scope="module")
def scen_db(tmp_path_factory):
    db = str(tmp_path_factory.mktemp("swupdate") / "runs.db")
    files = [os.path.join(SW, n + ".yaml") for n in scenario_names()]
    r = sim("run", *files, "-q", "-j", JOBS, "--work", WORK, "--db", db, timeout=1200)
    assert r.returncode in (0, 1), f"ota-sim run: exit {r.returncode}\n{r.stderr[-3000:]}"
    return db


def rows(db, where="1", args=()):
    con = sqlite3.connect(db)
    try:
        return con.execute(
            "SELECT case_id, outcome, detail, reproduce, equivalent_to FROM trials WHERE run_id = "
            f"(SELECT max(id) FROM runs) AND {where}", args).fetchall()
    finally:
        con.close()


def inv_details(db, name):
    """{case: detail} of invariant name in the run database's last run."""
    con = sqlite3.connect(db)
    try:
        return dict(con.execute(
            "SELECT t.case_id, i.detail FROM invariants i JOIN trials t ON t.id = i.trial_id "
            "WHERE i.name = ? AND t.run_id = (SELECT max(id) FROM runs)", (name,)).fetchall())
    finally:
        con.close()


# swupdate 2022.12 sometimes ends a resumed download with "Writing into SWUpdate IPC stream
# failed" after "SWUPDATE successful": the slot and the trial env are written, the server gets
# closed/failure, and the device is left with upgrade_available=1 (caught by settled: state
# HEALTH_CHECK). Seen once in this session's runs of truncated-download (some 20 to 40, not
# counted exactly), under a load of 6
# (docs/swupdate.md, "A race at the end of a resumed download"). A timing race of swupdate's,
# not of the scenario: that case is run again, up to 3 times, and the race is reported.
RACY = {"truncated-download": "settled: settled, state HEALTH_CHECK"}


@pytest.mark.parametrize("name", scenario_names())
def test_scenario(name, scen_db, tmp_path):
    got = [r for r in rows(scen_db) if r[0] == name or r[0].startswith(name + "/")]
    assert got, f"{name} was not run"
    for case, outcome, detail, reproduce, _ in got[1:]:  # a mix: one trial per device
        bad = failed_invariants(scen_db, case).get(case, [])
        assert outcome == "pass", f"{case}: {outcome}: {detail}\n invariants: {bad}\n reproduce: {reproduce}"
    case, outcome, detail, reproduce, _ = got[0]
    bad = failed_invariants(scen_db, case).get(case, [])
    for k in range(3):
        if outcome == "pass" or not (RACY.get(name) and detail.startswith(RACY[name])):
            break
        warnings.warn(f"{case}: swupdate's resumed-download race ({detail}); run again")
        db = str(tmp_path / f"again{k}.db")
        r = sim("run", os.path.join(SW, name + ".yaml"), "-q", "--work", WORK, "--db", db,
                timeout=600)
        assert r.returncode in (0, 1), r.stderr[-2000:]
        case, outcome, detail, reproduce, _ = rows(db)[0]
        bad = failed_invariants(db, case).get(case, [])
    assert outcome == "pass", f"{case}: {outcome}: {detail}\n invariants: {bad}\n reproduce: {reproduce}"


def test_the_server_faults_fired(scen_db):
    """corrupt and truncated downloads: the server's rule was applied to the
    device's DDI artifact requests (fault-fired), or the scenario proves
    nothing."""
    got = inv_details(scen_db, "fault-fired")
    for case in ("corrupt-download", "truncated-download"):
        assert case in got and "applied" in got[case] and "never" not in got[case], got


def mix_trials(db, name):
    """(case, outcome, final version, final report, state lines) of a mix's devices."""
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT case_id, outcome, final_version, final_report, state_lines "
                           "FROM trials WHERE run_id = (SELECT max(id) FROM runs) AND case_id "
                           "LIKE ? ORDER BY case_id", (name + "/%",)).fetchall()
    finally:
        con.close()


def test_the_mix_is_one_rollout_over_both_agents(scen_db):
    """mixed-rollout: two ota-agent and two SWUpdate devices, each its own
    trial, all in the one rollout the runner made for the mix (mx-...): the
    ota-agent devices' update ids name it; the SWUpdate devices have no
    other source of an action (DDI actions come only from rollouts, and the
    mix's is the server's only one) and ended on 2.0.0 with success."""
    got = mix_trials(scen_db, "mixed-rollout")
    assert [c for c, *_ in got] == ["mixed-rollout/ota-agent-1", "mixed-rollout/ota-agent-2",
                                    "mixed-rollout/swupdate-1", "mixed-rollout/swupdate-2"], got
    assert all((o, v, rep) == ("pass", "2.0.0", "success") for _, o, v, rep, _ in got), got
    updates = set()
    for c, _, _, _, lines in got[:2]:
        updates |= {u.split("-sim-")[0] for u in re.findall(r'"update":"([^"]+)"', lines)}
    assert len(updates) == 1 and next(iter(updates)).startswith("mx-"), updates


def test_a_bad_release_stops_the_mix_across_both_agents(scen_db):
    """mixed-rollout-unhealthy: every device ends on 1.0.0; a device that got
    the action reports failure (ota-agent rolled back, SWUpdate fell back and
    confirmed FAILED), one that polled after the rollout stopped got no
    action at all; and at least one failure came first (what stopped it)."""
    got = mix_trials(scen_db, "mixed-rollout-unhealthy")
    assert len(got) == 4, got
    for case, outcome, version, report, lines in got:
        assert (outcome, version) == ("pass", "1.0.0"), (case, outcome, version)
        tried = '"to":"DOWNLOADING"' in lines
        assert report == ("failure" if tried else "none"), (case, report, lines[-600:])
    assert any(r == "failure" for _, _, _, r, _ in got), got


@pytest.fixture(scope="module")
def matrix_db(tmp_path_factory):
    db = str(tmp_path_factory.mktemp("swupdate-matrix") / "runs.db")
    r = sim("matrix", "-q", "-j", JOBS, "--matrix", os.path.join(SW, "matrix.yaml"), "--work",
            WORK, "--db", db, timeout=1800)
    assert r.returncode in (0, 1), f"ota-sim matrix: exit {r.returncode}\n{r.stderr[-3000:]}"
    return db


# The cases where the harness catches swupdate 2022.12 itself (docs/swupdate.md,
# "A lost ustate store"): a cut after swupdate -c 2's feedback reached the server and
# before its ustate=0 store is durable leaves ustate=1 for good (the next start's -c 2
# finds no action and clears nothing; a later rollout's action would be closed with
# success uninstalled: agent/tests/swu, test_a_lost_ustate_store_never_confirms_the_next_action).
KNOWN = {
    "rootfs-update-good/power-cut@point:14": ["settled"],
    "rootfs-update-good-redundant-env/power-cut@point:14": ["settled"],
}


def test_matrix_every_state_and_persistence_point(matrix_db):
    got = rows(matrix_db)
    points = [r for r in got if "@point:" in r[0]]
    states = [r for r in got if "@state:" in r[0]]
    # per scenario: swupdate's 11 counted calls (5 env stores, the slot write), the
    # commit's 2 (fw_setenv), -c 2's ustate=0 store 2; every one run (swupdate's
    # feedback is not journaled, so no point is taken as equivalent to another)
    assert len(points) == 30 and not any(r[4] for r in points), sorted(r[0] for r in points)
    assert len(states) == 14, sorted(r[0] for r in states)
    failed = {c: (o, d, rep) for c, o, d, rep, _ in got if o != "pass"}
    bad = failed_invariants(matrix_db)
    unexpected = {c: v for c, v in failed.items() if bad.get(c) != KNOWN.get(c)}
    assert not unexpected, "\n".join(f"{c}: {o}: {d}\n  invariants: {bad.get(c)}\n  reproduce: {rep}"
                                     for c, (o, d, rep) in unexpected.items())
    assert set(failed) == set(KNOWN), f"the known swupdate weakness no longer shows: {sorted(failed)}"


def test_the_lost_slot_weakness_is_where_it_is_documented(matrix_db):
    """docs/swupdate.md: swupdate never syncs the slot it wrote. A cut after
    its last env store (point 11: ustate=1) keeps an env that selects slot B
    and loses B's bytes: the bootloader falls back and the update is lost
    (the device recovers and reports the failure: the matrix's `unless`).
    A cut at points 7-10 (the env already selects B, ustate=7) loses them
    too, but swupdate then finds the action open and installs again."""
    found = {c: d for c, d in inv_details(matrix_db, "expected-outcome").items()
             if "@point:" in c}
    lost = sorted(c for c, d in found.items() if "found ROLLING_BACK" in d)
    assert lost == ["rootfs-update-good-redundant-env/power-cut@point:11",
                    "rootfs-update-good/power-cut@point:11"], lost
    for p in (7, 9):
        assert "found INSTALLING" in found[f"rootfs-update-good/power-cut@point:{p}"], found


@pytest.mark.parametrize("mutant,scenario,invariant", [
    # seed 003 without its health check: commits a slot whose service is down
    ("commit-unhealthy", "rootfs-unhealthy", "bootable"),
    # confirms SUCCESS to the server after the bootloader fell back
    ("confirm-success", "rootfs-boot-failure", "truthful-report"),
    # installs into the slot it runs from (swupdate -e ota,a on slot A)
    ("running-slot", "rootfs-update-good", "active-slot-untouched"),
])
def test_a_broken_device_side_is_caught(mutant, scenario, invariant, tmp_path):
    db = str(tmp_path / "runs.db")
    env = dict(os.environ, OTASIM_SWUPDATE_MUTANT=mutant)
    r = subprocess.run([SIM, "run", os.path.join(SW, scenario + ".yaml"), "-q", "--work", WORK,
                        "--db", db], capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 1, f"the mutant {mutant} was not caught: exit {r.returncode}\n{r.stderr[-2000:]}"
    assert invariant in failed_invariants(db).get(scenario, []), failed_invariants(db)
