"""The harness must be able to fail, for the right reason: each mutant agent
(a test build with one known bug, agent/CMakeLists.txt OTA_MUTANT_NAMES, the
bug in agent/tests/mutants/<NAME>.patch) must be caught by named (case,
invariant) pairs that are about its bug, and the real agent must pass those
same cases (same ids, same seeds) in the same pytest run. Any other failure
of the mutant (a timing bound, a fault that did not fire because the mutant
skips a state) is not a catch.

Each mutant runs only the cases that catch it (`ota-sim matrix --cases-from`),
so a mutant costs seconds, not the whole matrix; the real agent runs the
union of those cases once."""
import os
import re
import sqlite3

import pytest

from conftest import BUILD, HERE, JOBS, SRC, failed_invariants, sim

WORK = os.path.join(BUILD, "sim-work-pytest")
REAL = os.path.join(BUILD, "agent", "ota-agent")

# mutant -> [(case id, invariant, why that invariant is the bug)]. Case ids
# are those of `ota-sim matrix --with-scenarios scenarios --list`; no
# `@point:N` case here: point numbers count the agent's own calls, so the
# same id is a different crash state for another agent.
CATCHES = {
    "switch-no-dirsync": [
        ("app-update-good/power-cut@state:COMMITTING", "running-version",
         "the cut undoes the unsynced rename of `current`: the app runs 1.0.0 from a, the database "
         "says 2.0.0 in b"),
        ("app-update-good/power-cut@state:COMMITTING", "active-slot-complete",
         "`current` names a again while the database names 2.0.0"),
        ("power-loss-committing/power-cut@state:COMMITTING", "running-version",
         "the same rename lost in the scenario file's COMMITTING cut"),
    ],
    "state-after-switch": [
        ("agent-crash-after-switch-rename/agent-crash@fault-point:switching.after_rename",
         "truthful-report",
         "the switch ran while the journal said INSTALLING: the resumed install refuses the now "
         "active slot and reports failure for the 2.0.0 the device runs"),
        ("agent-crash-after-switch-rename/agent-crash@fault-point:switching.after_rename",
         "running-version",
         "`current` -> b while the app started from a still answers 1.0.0 (no restart)"),
    ],
    "success-before-commit": [
        ("service-crash-after-switch", "truthful-report",
         "\"success\" sent on entering HEALTH_CHECK; the crash rolls back to 1.0.0"),
        ("service-health-500", "truthful-report",
         "\"success\" for 2.0.0 whose /health answers 500 and is rolled back"),
        ("rootfs-unhealthy", "truthful-report",
         "\"success\" for the 2.0.0 rootfs the health check then rolls back"),
    ],
    "install-no-fsync": [
        ("app-update-good/power-cut@state:COMMITTING", "active-slot-complete",
         "the cut loses the unsynced files of slot b, which the database already names"),
        ("app-update-good/power-cut@state:COMMITTING", "running-version",
         "the app in the half-lost slot b does not answer 2.0.0"),
        ("rootfs-update-stale-slot/power-cut@state:SWITCHING", "running-version",
         "the unsynced rootfs image is lost: B boots the old image, 2.0.0 is committed"),
    ],
    "commit-before-health": [
        ("service-health-500", "bootable",
         "2.0.0 answering /health 500 is committed without a probe: the device stays unhealthy"),
        ("service-health-500", "expected-outcome",
         "the bad release is kept (1.0.0 with a failure report expected)"),
        ("service-crash-after-switch", "expected-outcome",
         "the release that crashes after the switch is kept instead of rolled back"),
        ("rootfs-unhealthy", "bootable",
         "the rootfs whose service never comes up is committed"),
    ],
    "rootfs-image-no-sync": [
        ("rootfs-update-stale-slot/power-cut@state:SWITCHING", "running-version",
         "the image on rootB was not durable before the env switch: the cut leaves B's old 1.0.0, "
         "it boots, and the database says 2.0.0"),
        ("rootfs-update-stale-slot/power-cut@state:SWITCHING", "active-slot-complete",
         "rootB holds 1.0.0, the database names 2.0.0"),
        ("rootfs-update-stale-slot/power-cut@state:REBOOTING", "truthful-report",
         "\"success\" for 2.0.0 while the device runs 1.0.0"),
        ("rootfs-update-good/power-cut@state:REBOOTING", "expected-outcome",
         "with an empty B the lost image does not boot: the good update is abandoned (progress)"),
    ],
    "trial-env-no-sync": [
        ("rootfs-update-good/power-cut@state:REBOOTING", "expected-outcome",
         "the cut loses the trial env: A boots with upgrade_available=0, the agent takes it for a "
         "fallback and abandons a good update (progress)"),
        ("rootfs-update-stale-slot/power-cut@state:REBOOTING", "expected-outcome",
         "the same loss with a bootable image in B"),
    ],
    "rootfs-commit-on-boot": [
        ("rootfs-unhealthy", "bootable",
         "the new rootfs is committed once it boots: its service never comes up"),
        ("rootfs-unhealthy", "expected-outcome",
         "2.0.0 kept, 1.0.0 with a failure report expected"),
    ],
    "fallback-keeps-bootcount": [
        ("rootfs-boot-failure", "bootenv-consistent",
         "after the bootloader's fallback to A the rollback leaves bootcount past bootlimit"),
        ("rootfs-unhealthy", "bootenv-consistent",
         "the same after the agent's own rollback of a booted slot"),
    ],
    "commit-keeps-download": [
        ("app-update-good", "no-temp-files", "the committed payload stays in the download dir"),
        ("rootfs-update-good", "no-temp-files", "the same for a rootfs image"),
    ],
    "standby-switch-on-start": [
        ("blue-green-standby/power-cut@state:STANDBY", "standby-waits",
         "the start after the cut in STANDBY switches while the rollout is not activated"),
        ("blue-green-standby/agent-crash@state:STANDBY", "standby-waits",
         "the same after an agent crash in STANDBY"),
    ],
}


# Mutants whose catch needs a crash model other than minimal or a fault on the
# download's fsync: scenarios/test_crash_models.py runs them, each against the
# real agent on the same cases and seeds, and names the model that must catch
# it (mutant -> where).
ELSEWHERE = {
    "switch-before-sync": "test_crash_models.py: caught under reorder only",
    "trust-download-size": "test_crash_models.py: caught under torn only",
    "hash-after-eio": "test_crash_models.py: test_fsync_eio_drops_the_pages",
}


# mutant -> extra `ota-sim matrix` options its cases need (a crash model, ...);
# the real agent runs those cases with the same options.
ARGS = {}


def mutant_names():
    """OTA_MUTANT_NAMES of agent/CMakeLists.txt."""
    text = open(os.path.join(SRC, "agent", "CMakeLists.txt")).read()
    m = re.search(r"set\(OTA_MUTANT_NAMES\n(.*?)\n\)", text, re.S)
    assert m, "agent/CMakeLists.txt: no set(OTA_MUTANT_NAMES ...)"
    return [line.split("#")[0].strip() for line in m.group(1).splitlines()
            if line.split("#")[0].strip()]


def case_ids(names):
    return sorted({case for m in names for case, _, _ in CATCHES[m]})


def run_cases(agent, cases, db, tmp_path, args=()):
    listing = tmp_path / (os.path.basename(db) + ".cases")
    listing.write_text("".join(c + "\n" for c in cases))
    return sim("matrix", "-q", "-j", JOBS, "--work", WORK, "--db", db, "--agent", agent,
               "--with-scenarios", HERE, "--cases-from", str(listing), *args, timeout=1200)


def outcomes(db, what="outcome"):
    """{case id: outcome (or another trials column)} of the last run."""
    con = sqlite3.connect(db)
    try:
        return dict(con.execute(
            f"SELECT case_id, {what} FROM trials WHERE run_id = (SELECT max(id) FROM runs)"))
    finally:
        con.close()


def test_every_mutant_has_named_catches():
    names = mutant_names()
    missing = [m for m in names if m not in CATCHES and m not in ELSEWHERE]
    stale = [m for m in list(CATCHES) + list(ELSEWHERE) if m not in names]
    crash_tests = open(os.path.join(HERE, "test_crash_models.py")).read()
    untested = [m for m in ELSEWHERE if f"ota-agent-mutant-{m}" not in crash_tests]
    assert not untested, f"ELSEWHERE names mutants test_crash_models.py does not run: {untested}"
    assert not missing, f"mutants without (case, invariant) catches in CATCHES: {missing}"
    assert not stale, f"CATCHES names mutants that agent/CMakeLists.txt does not build: {stale}"


@pytest.fixture(scope="module")
def real_dbs(tmp_path_factory):
    """The real agent on the union of the mutants' cases, once per option set:
    {options: run database}."""
    tmp = tmp_path_factory.mktemp("real")
    dbs = {}
    for i, args in enumerate(sorted({tuple(ARGS.get(m, ())) for m in CATCHES})):
        names = [m for m in CATCHES if tuple(ARGS.get(m, ())) == args]
        db = str(tmp / f"real-{i}.db")
        r = run_cases(REAL, case_ids(names), db, tmp, args)
        assert r.returncode == 0, f"the real agent fails the cases of {names} {list(args)} " \
            f"(exit {r.returncode})\n{r.stderr[-3000:]}"
        dbs[args] = db
    return dbs


@pytest.mark.parametrize("mutant", sorted(CATCHES))
def test_mutant_is_caught(mutant, real_dbs, tmp_path):
    agent = os.path.join(BUILD, "agent", f"ota-agent-mutant-{mutant}")
    if not os.path.exists(agent):
        pytest.fail(f"{agent} not built (OTA_MUTANTS=ON)")
    cases = case_ids([mutant])
    db = str(tmp_path / "mutant.db")
    args = tuple(ARGS.get(mutant, ()))
    r = run_cases(agent, cases, db, tmp_path, args)
    assert r.returncode == 1, f"mutant {mutant} was not caught (exit {r.returncode})\n" \
        f"{r.stderr[-2000:]}"
    failed = failed_invariants(db)
    missed = [(case, inv) for case, inv, _ in CATCHES[mutant] if inv not in failed.get(case, [])]
    assert not missed, f"{mutant}: not caught by {missed}; failed: {failed}"
    real = outcomes(real_dbs[args])
    assert {c: real.get(c) for c in cases} == {c: "pass" for c in cases}, \
        f"the real agent does not pass {mutant}'s cases"
    seeds = outcomes(real_dbs[args], "seed")
    assert outcomes(db, "seed") == {c: seeds[c] for c in cases}, "not the same seeds"
    for case, inv, why in CATCHES[mutant]:
        print(f"{mutant}: {case}: {inv} ({why})")


def test_recording_run_failure_is_the_agents(tmp_path):
    """A points: all entry whose no-fault recording run already breaks an
    invariant is a failed trial of the agent under test (exit 1, the
    invariant, the reproduce command), not a harness error."""
    agent = os.path.join(BUILD, "agent", "ota-agent-mutant-commit-keeps-download")
    db = str(tmp_path / "runs.db")
    r = sim("matrix", "-j", JOBS, "--work", WORK, "--db", db, "--agent", agent,
            "--case", "app-update-good/power-cut@point:1", timeout=600)
    assert r.returncode == 1, f"exit {r.returncode}\n{r.stderr[-2000:]}"
    case = "app-update-good/power-cut@point:recording"
    assert "no-temp-files" in failed_invariants(db).get(case, []), failed_invariants(db)
    assert f"FAIL {case}: no-temp-files" in r.stderr, r.stderr[-2000:]
    repro = [l for l in r.stderr.splitlines() if "reproduce:" in l]
    assert repro and "--fault none" in repro[0] and agent in repro[0], r.stderr[-2000:]
    # the real agent's recording passes, and so does the case asked for
    r = sim("matrix", "-q", "-j", JOBS, "--work", WORK, "--db", db, "--agent", REAL,
            "--case", "app-update-good/power-cut@point:1", timeout=600)
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stderr[-2000:]}"
    assert outcomes(db) == {"app-update-good/power-cut@point:1": "pass"}


def test_recording_harness_error_is_exit_5(tmp_path):
    """The harness breaking on the way to the recording run stays exit 5,
    with no trial blamed on the agent: here its cache cannot be written (the
    release build and signing keys of the recording's server)."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "cache").write_text("a file where the cache directory goes\n")
    r = sim("matrix", "-q", "--work", str(work), "--db", str(tmp_path / "runs.db"), "--agent",
            REAL, "--case", "app-update-good/power-cut@point:1", timeout=600)
    assert r.returncode == 5, f"exit {r.returncode}\n{r.stderr[-2000:]}"
    assert "FAIL" not in r.stderr and "cache" in r.stderr, r.stderr[-2000:]
