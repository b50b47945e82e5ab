"""How a run of ota-sim ends: Ctrl-C (SIGINT) or SIGTERM mid-run ends every
process the run started (trial children, device process groups, daemonized
apps, servers, the agent zygote) and leaves no tree in the trees dir; a
failed trial's tree moves out of /dev/shm into WORK/failed/ (the last runs
only) and its path is printed; --keep prints where it kept every tree.

    OTA_BUILD_DIR=build /usr/bin/python3 -m pytest scenarios/test_runs.py
"""
import glob
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import HERE, SIM

TREES = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
# app updates, power cuts and agent crashes at states: each trial's device has
# its own process group and a daemonized app
CASES = [f"app-update-good/{f}@state:{s}" for f in ("power-cut", "agent-crash")
         for s in ("CHECKING", "DOWNLOADING", "VERIFYING", "INSTALLING", "SWITCHING",
                   "HEALTH_CHECK", "COMMITTING")]
# a scenario whose expectation the agent cannot meet: its one trial fails
FAILING = """description: power cut at SWITCHING, expecting a version no release has
device: {profile: app, health_window_ms: 1000}
releases:
  - {version: "1.0.0", variant: video-app, factory: true}
  - {version: "2.0.0", variant: video-app-v2}
fault: {kind: power-cut, trigger: {state: SWITCHING}}
expect: {version: "9.9.9", slot: b, report: success, recover_within_s: 30}
"""


def session_processes(sid):
    """(pid, name, state) of every process in session sid (ota-sim started
    with start_new_session: nothing of a run leaves its session, no setsid)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        name, rest = st[st.index("(") + 1:st.rindex(")")], st[st.rindex(")") + 2:].split()
        if int(rest[3]) == sid:
            out.append((int(d), name, rest[0]))
    return out


def run_dirs(trees, pid):
    return glob.glob(os.path.join(trees, f"ota-sim-run-{pid}-*"))


@pytest.fixture
def trees(tmp_path):
    """The default trees dir (/dev/shm) where there is one, as users run it."""
    return TREES or str(tmp_path / "trees")


def start(args, work, db):
    return subprocess.Popen([SIM, *args, "--work", work, "--db", db], start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# Ctrl-C: the terminal sends SIGINT to the foreground process group (ota-sim
# and its trial children; not the devices' own groups); kill: SIGTERM to ota-sim
@pytest.mark.parametrize("sig,group", [(signal.SIGINT, True), (signal.SIGTERM, False)],
                         ids=["ctrl-c", "sigterm"])
def test_signal_ends_every_process_of_the_run(sig, group, work, trees, tmp_path):
    args = ["matrix", "-j", "4", "-q"] + [a for c in CASES for a in ("--case", c)]
    if trees != TREES:
        args += ["--trees", trees]
    p = start(args, work, str(tmp_path / "runs.db"))
    try:
        # mid-run: devices up, each with its app (the app's own process group)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and p.poll() is None:
            procs = session_processes(p.pid)
            if sum(1 for _, name, _ in procs if name.startswith("video-app")) >= 2:
                break
            time.sleep(0.05)
        assert p.poll() is None, "the run ended before any device was up: " + p.stderr.read()
        running = session_processes(p.pid)
        assert len(running) > 4, running
        assert run_dirs(trees, p.pid), "no run dir while the run is on"
        if group:
            os.killpg(p.pid, sig)
        else:
            p.send_signal(sig)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:  # the test failed: end what it can
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    # nothing of the run is left running, and not even a zombie (pid 1 in a
    # container may never reap what the run orphaned)
    time.sleep(0.2)
    left = session_processes(p.pid)
    assert [x for x in left if x[2] != "Z"] == [], f"left running after {sig.name}"
    assert left == [], f"left as zombies after {sig.name}"
    assert run_dirs(trees, p.pid) == [], f"a tree left in {trees}"
    assert p.returncode == -sig, err  # ended by the signal, as a shell expects
    assert "interrupted: ending every process of the run" in err


def test_failed_trial_tree_moves_out_of_the_trees_dir(trees, tmp_path):
    work = str(tmp_path / "work")  # its own: WORK/failed is counted
    scenario = tmp_path / "expect-unmet.yaml"
    scenario.write_text(FAILING)
    good = os.path.join(HERE, "power-loss-switching.yaml")
    args = ["run", str(scenario), good]
    if trees != TREES:
        args += ["--trees", trees]
    pids = []
    for _ in range(7):  # more runs than WORK/failed keeps
        p = start(args, work, str(tmp_path / "runs.db"))
        out, err = p.communicate(timeout=300)
        assert p.returncode == 1, err
        pids.append(p.pid)
        assert run_dirs(trees, p.pid) == [], f"the run left its dir in {trees}"
        kept = re.findall(r"^  tree kept: (\S+)$", err, re.M)
        assert len(kept) == 1, err  # the failed trial's, not the passing one's
        assert kept[0].startswith(os.path.join(work, "failed", f"ota-sim-run-{p.pid}-")), kept
        assert os.path.isdir(os.path.join(kept[0], "dev")), os.listdir(kept[0])
        assert session_processes(p.pid) == []
    left = sorted(os.listdir(os.path.join(work, "failed")))
    assert len(left) == 5, left  # the last five runs
    assert not any(d.startswith(f"ota-sim-run-{pids[0]}-") for d in left), left
    assert any(d.startswith(f"ota-sim-run-{pids[-1]}-") for d in left), left


def test_keep_prints_every_tree(work, trees, tmp_path):
    scenario = tmp_path / "expect-unmet.yaml"
    scenario.write_text(FAILING)
    good = os.path.join(HERE, "power-loss-switching.yaml")
    args = ["run", str(scenario), good, "--keep", "-q"]
    if trees != TREES:
        args += ["--trees", trees]
    p = start(args, work, str(tmp_path / "runs.db"))
    out, err = p.communicate(timeout=300)
    try:
        assert p.returncode == 1, err
        kept = dict(re.findall(r"^kept (\S+): (\S+)$", err, re.M))
        assert set(kept) == {"expect-unmet/power-cut@state:SWITCHING",
                             "power-loss-switching/power-cut@state:SWITCHING"}, err
        run_dir = re.search(r"^ota-sim: kept the run's dir \(servers, trees\): (\S+)$", err,
                            re.M).group(1)
        assert run_dirs(trees, p.pid) == [run_dir]
        for tree in kept.values():
            assert tree.startswith(run_dir + "/") and os.path.isdir(os.path.join(tree, "dev"))
    finally:
        for d in run_dirs(trees, p.pid):
            subprocess.run(["rm", "-rf", "--", d], check=True)


def test_list_leaves_no_dir(tmp_path):
    """matrix --list records the persistence points (recording runs start a
    server per scenario): with a work dir of its own, nothing is cached, and
    the servers' dirs went with the run (they piled up in /dev/shm)."""
    trees = str(tmp_path / "trees")
    os.makedirs(trees)
    p = start(["matrix", "--list", "--trees", trees, "--case", "app-update-good/power-cut@point:1"],
              str(tmp_path / "work"), str(tmp_path / "runs.db"))
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    assert "app-update-good/power-cut@point:1" in out, out
    assert os.listdir(trees) == [], "the run left its dir: %s" % os.listdir(trees)
