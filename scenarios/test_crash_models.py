"""Each crash model earns its place (sim/include/otasim/power.h): a seeded
sample of power cuts under minimal, reorder and torn, run with the real agent
and with two mutants that only one model catches.

- switch-before-sync installs the app and renames `current` onto it with no
  fsync, then one sync(): right if the slot's unsynced data reaches the disk
  before the unsynced rename. minimal loses both, torn too (the slot's names
  were never durable); only reorder keeps the rename without the data.
- trust-download-size takes a full-length download file as written: right if
  unsynced writes persist whole (minimal loses them, reorder keeps a prefix
  of them); only torn leaves a full length over holes.

The real agent passes every trial of both scenarios under every model.
The scenarios (scenarios/crash-models/) cut at named fault points: the build
needs -DOTA_FAULT_POINTS=ON, the mutants -DOTA_MUTANTS=ON."""
import glob
import os
import sqlite3
import subprocess

import pytest

from conftest import BUILD, HERE, JOBS, failed_invariants, sim

WORK = os.path.join(BUILD, "sim-work-pytest")
MODELS = ["minimal", "reorder", "torn"]
CUT_SWITCH = os.path.join(HERE, "crash-models", "cut-after-switch-rename.yaml")
CUT_DOWNLOAD = os.path.join(HERE, "crash-models", "cut-before-download-sync.yaml")

# agent -> (scenarios, the one model that must catch it, subsets per cut under
# that model: enough seeds that the catch does not hang on one). A torn seed
# catches trust-download-size about half the time (when the torn last write
# keeps its last sector: the file is full length over holes), provided more
# than one sector is unsynced at the cut: cut-before-download-sync.yaml makes
# no checkpoint during the download for that reason (see its comment).
AGENTS = {
    "ota-agent": ([CUT_SWITCH, CUT_DOWNLOAD], None, 4),
    "ota-agent-mutant-switch-before-sync": ([CUT_SWITCH], "reorder", 8),
    "ota-agent-mutant-trust-download-size": ([CUT_DOWNLOAD], "torn", 16),
}
# what the mutants' bug looks like: the good update did not complete (broken
# slot rolled back, corrupt payload refused) or the slot is not the release
BUG_INVARIANTS = {"expected-outcome", "active-slot-complete", "running-version", "bootable"}


def trials(db):
    con = sqlite3.connect(db)
    try:
        return con.execute(
            "SELECT case_id, seed, outcome, crash_model, reproduce, detail FROM trials "
            "WHERE run_id = (SELECT max(id) FROM runs)").fetchall()
    finally:
        con.close()


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("agent", sorted(AGENTS))
def test_crash_model(agent, model, tmp_path):
    scenarios, catcher, n = AGENTS[agent]
    binary = os.path.join(BUILD, "agent", agent)
    if not os.path.exists(binary):
        pytest.fail(f"{binary} not built (-DOTA_MUTANTS=ON)")
    subsets = n if model == catcher else 4
    db = str(tmp_path / "runs.db")
    r = sim("run", *scenarios, "-q", "-j", JOBS, "--work", WORK, "--db", db, "--agent", binary,
            "--trees", str(tmp_path), "--seed", "1", "--crash-model", model, "--crash-subsets", str(subsets), timeout=900)
    rows = trials(db)
    failed = failed_invariants(db)

    # recorded per trial: the model, one trial per subset, each its own seed
    per_cut = 1 if model == "minimal" else subsets
    assert len(rows) == per_cut * len(scenarios), rows
    assert {row[3] for row in rows} == {model}
    assert len({row[1] for row in rows}) == len(rows), "seeds repeat"
    for case_id, seed, _, _, repro, _ in rows:
        if model == "minimal":
            assert "--crash-model" not in repro
        else:
            assert case_id.rsplit("/", 1)[1].startswith(model + "-"), case_id
            assert f"--crash-model {model} --crash-subsets 1" in repro
            assert f"--seed {seed} " in repro
    for cid, names in failed.items():
        assert "fault-fired" not in names, (
            f"{cid}: the fault point never fired (build with -DOTA_FAULT_POINTS=ON)")

    if model != catcher:
        assert r.returncode == 0, f"{agent} failed under {model}: {failed}\n{r.stderr[-2000:]}"
        assert not failed
        return
    assert r.returncode == 1, f"{agent} not caught under {model} (exit {r.returncode})\n" \
                              f"{r.stderr[-2000:]}"
    assert failed, "exit 1 without a failed invariant"
    for cid, names in failed.items():
        assert set(names) & BUG_INVARIANTS, f"{cid}: caught by {names}, not by its bug"
    # the reproduce command reruns a subset exactly: the same outcome. Not for a
    # torn download: torn tears each file's last unsynced write, and a
    # download's last write is the network's last chunk, whose size the rerun
    # does not repeat (seen: seed 3 caught, its rerun not, in about a third
    # of runs under load). The seed is the same; the write it tears is not.
    # scenarios/README.md says so; deterministic download writes are the fix.
    for outcome in ("fail", "pass"):
        if model == "torn" and scenarios == [CUT_DOWNLOAD]:
            break
        repro = next((row[4] for row in rows if row[2] == outcome), None)
        if repro:
            again = subprocess.run(repro.replace(" --keep", "").split() + ["-q", "--work", WORK,
                                                                      "--db", db, "--trees",
                                                                      str(tmp_path)],
                                   capture_output=True, text=True, timeout=300)
            assert again.returncode == (1 if outcome == "fail" else 0), repro
    print(f"{agent}: {len(failed)} of {len(rows)} {model} trials caught it: {failed}")


# ---- fsync EIO: the agent must not trust what the disk may have dropped ----

EIO_SCENARIO = os.path.join(HERE, "crash-models", "eio-on-download-fsync.yaml")


def download_fsync_points(tmp_path):
    """The numbers of the download's fdatasync calls in a recorded app update."""
    trees = tmp_path / "trees"
    r = sim("run", os.path.join(HERE, "app-update-good.yaml"), "-q", "--keep", "--trees",
            str(trees), "--work", WORK, "--db", str(tmp_path / "rec.db"), timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    journals = glob.glob(str(trees / "*" / "case-0" / "dev" / ".sim" / "journal-1.bin"))
    assert len(journals) == 1, journals
    out = sim("journal", journals[0]).stdout
    points = [int(line.split()[0]) for line in out.splitlines()
              if line.split()[1:2] == ["fsync"] and line.rstrip().endswith("payload.part")]
    assert points, out
    return points


@pytest.mark.parametrize("agent", ["ota-agent", "ota-agent-mutant-hash-after-eio"])
def test_fsync_eio_drops_the_pages(agent, tmp_path):
    """An fdatasync of the download fails once with EIO (the interposer drops
    the unsynced pages, as Linux may): the real agent checks the file from disk
    and completes; the mutant goes on from its in-memory hash and length and
    never completes the update."""
    binary = os.path.join(BUILD, "agent", agent)
    if not os.path.exists(binary):
        pytest.fail(f"{binary} not built (-DOTA_MUTANTS=ON)")
    for point in download_fsync_points(tmp_path):
        db = str(tmp_path / f"eio-{point}.db")
        r = sim("run", EIO_SCENARIO, "-q", "--work", WORK, "--db", db, "--agent", binary,
                "--trees", str(tmp_path), "--fault", "eio", "--trigger", f"point:{point}", timeout=600)
        failed = failed_invariants(db)
        assert not any("fault-fired" in v for v in failed.values()), failed
        if agent == "ota-agent":
            assert r.returncode == 0, f"fsync EIO at call {point}: {failed}\n{r.stderr[-2000:]}"
        else:
            assert r.returncode == 1, f"mutant not caught at call {point}"
            assert all("expected-outcome" in v for v in failed.values()), failed


# ---- a mutation the model cannot represent ends the trial as an error ----

FAKE_AGENT = """#!/usr/bin/python3
# A stand-in for ota-agent: changes a file under the device root, through a
# shared writable mapping (unmodelled) or with write(2) (modelled).
import mmap, os, sys
root = os.environ.get("OTASIM_ROOT")
if root and "update" in sys.argv:
    p = os.path.join(root, "var", "lib", "ota", "mapped")
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
    os.write(fd, b"\\0" * 4096)
    if MAPPED:
        m = mmap.mmap(fd, 4096, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        m[:4] = b"live"
        m.close()
    os.close(fd)
sys.exit(0)
"""


@pytest.mark.parametrize("mapped", [True, False])
def test_unmodelled_call_ends_the_trial_as_an_error(mapped, tmp_path):
    agent = tmp_path / "agent"
    agent.write_text(FAKE_AGENT.replace("MAPPED", str(mapped)))
    agent.chmod(0o755)
    db = str(tmp_path / "runs.db")
    r = sim("run", os.path.join(HERE, "app-update-good.yaml"), "-q", "--work", WORK, "--db", db,
            "--agent", str(agent), "--trees", str(tmp_path), timeout=300)
    (outcome, detail), = [row[2:6:3] for row in trials(db)]
    if mapped:
        assert r.returncode == 5, r.stderr[-2000:]
        assert outcome == "error"
        assert "unmodelled call mmap(MAP_SHARED, PROT_WRITE) " in detail
        assert detail.split(" (")[0].endswith("/var/lib/ota/mapped"), detail
    else:
        # the stand-in does no update: the invariants fail it, the harness does not
        assert r.returncode == 1, r.stderr[-2000:]
        assert outcome == "fail" and "unmodelled" not in detail, detail


def test_bad_crash_model_options_are_usage_errors(tmp_path):
    good = os.path.join(HERE, "app-update-good.yaml")
    r = sim("run", good, "--crash-model", "ext4")
    assert r.returncode == 2 and "unknown crash model 'ext4' (minimal, reorder or torn)" in r.stderr
    r = sim("run", good, "--crash-subsets", "0")
    assert r.returncode == 2 and "--crash-subsets: 1..64" in r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text('device: {profile: app}\nreleases:\n  - {version: "1.0.0", factory: true}\n'
                   'fault: {kind: eio, crash_model: torn}\n')
    r = sim("run", str(bad))
    assert r.returncode == 2 and "fault.crash_model: only for kind power-cut" in r.stderr
