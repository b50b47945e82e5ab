"""A fault must be seen to fire. For every fault kind, one scenario whose
fault cannot happen (a state the update never reaches, a path glob nothing
writes, a server rule for a release never offered) must fail `fault-fired`,
and the same scenario with a fault that does happen must pass it. What
"fired" means per kind: the harness saw the crash (journal CRASH record or
the agent killed at its point), the interposer journaled a failed call
(disk-full, eio), the proxy cut the link, the clock file moved under
libfaketime, the app was killed, the env reads as corrupt, a boot of the
kernel hung, the server counted the rule as applied to the trial's device.

Also: a scenario that needs named fault points, run with an agent built
without them, is reported as not run (exit 4, outcome not-run) with the
build option to use, even with -q.

Run with Debian's Python: OTA_BUILD_DIR=build /usr/bin/python3 -m pytest
scenarios/test_fault_fired.py"""
import os
import sqlite3

import pytest

from conftest import BUILD, HERE, JOBS, failed_invariants, sim

APP = """device: {profile: app, health_window_ms: %(window)d}
releases:
  - {version: "1.0.0", variant: video-app, factory: true}
  - {version: "2.0.0", variant: video-app-v2}
"""
ROOTFS = """device: {profile: rootfs, health_window_ms: 0}
releases:
  - {version: "1.0.0", variant: good, factory: true}
  - {version: "2.0.0", variant: good}
"""
NEVER = "ROLLING_BACK"  # a good update never rolls back
PAYLOAD = "/api/v1/releases/*/payload"


def server_rule(release=None):
    extra = ", release: %s" % release if release else ""
    return ("fault:\n  kind: none\n  server:\n    - id: cut\n"
            "      match: {path: %s, method: GET, nth: 1%s}\n"
            "      fault: {kind: truncate, after_bytes: 20000}\n" % (PAYLOAD, extra))


# kind -> (profile text, fault that happens, fault that cannot)
KINDS = {
    "power-cut": (APP % {"window": 0}, "fault: {kind: power-cut, trigger: {state: SWITCHING}}\n",
                  "fault: {kind: power-cut, trigger: {state: %s}}\n" % NEVER),
    "agent-crash": (APP % {"window": 0},
                    "fault: {kind: agent-crash, trigger: {state: INSTALLING}}\n",
                    "fault: {kind: agent-crash, trigger: {state: %s}}\n" % NEVER),
    "disk-full": (APP % {"window": 0},
                  'fault: {kind: disk-full, trigger: {state: INSTALLING}, path: "opt/app/b/*"}\n',
                  'fault: {kind: disk-full, trigger: {state: INSTALLING}, '
                  'path: "nothing/writes/here/*"}\n'),
    "eio": (APP % {"window": 0},
            'fault: {kind: eio, trigger: {state: DOWNLOADING}, '
            'path: "var/lib/ota/download/*", count: 2}\n',
            'fault: {kind: eio, trigger: {state: DOWNLOADING}, path: "nothing/writes/here/*", '
            'count: 2}\n'),
    "partition": (APP % {"window": 0},
                  "fault: {kind: partition, trigger: {state: DOWNLOADING}, duration_ms: 1500}\n",
                  "fault: {kind: partition, trigger: {state: %s}, duration_ms: 1500}\n" % NEVER),
    "clock-jump": (APP % {"window": 1000},
                   "fault: {kind: clock-jump, trigger: {state: HEALTH_CHECK}, jump_s: 86400}\n",
                   "fault: {kind: clock-jump, trigger: {state: %s}, jump_s: 86400}\n" % NEVER),
    "service-crash": (APP % {"window": 1000},
                      "fault: {kind: service-crash, trigger: {state: HEALTH_CHECK}}\n",
                      "fault: {kind: service-crash, trigger: {state: %s}}\n" % NEVER),
    "server": (APP % {"window": 0}, server_rule(), server_rule(release="never-offered")),
    # no "cannot match" twin: it is made before the update, and a trigger is refused
    # (test_corrupt_bootenv_takes_no_trigger); fired means the env reads as corrupt
    "corrupt-bootenv": (ROOTFS, "fault: {kind: corrupt-bootenv}\n", None),
    # fired when a boot of that kernel hung (armed is not enough): the old
    # release's kernel armed at a state a good update never reaches never boots hung
    "kernel-hang": (ROOTFS, "fault: {kind: kernel-hang}\n",
                    'fault: {kind: kernel-hang, release: "1.0.0", trigger: {state: %s}}\n'
                    % NEVER),
}


def write(d, name, text):
    path = os.path.join(d, name + ".yaml")
    with open(path, "w") as f:
        f.write("description: %s\n%s" % (name, text))
    return path


def fault_fired_rows(db, prefix):
    """[(ok, detail)] of the fault-fired checks of the cases of one scenario."""
    con = sqlite3.connect(db)
    try:
        run = con.execute("SELECT max(id) FROM runs").fetchone()[0]
        return con.execute(
            "SELECT i.ok, i.detail FROM trials t JOIN invariants i ON i.trial_id = t.id "
            "WHERE t.run_id = ? AND i.name = 'fault-fired' AND (t.case_id = ? OR "
            "t.case_id LIKE ?)", (run, prefix, prefix + "/%")).fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def runs(work, tmp_path_factory):
    """One ota-sim run of every kind's two scenarios (and a two-rule server
    scenario where one rule matches): its database."""
    d = str(tmp_path_factory.mktemp("fired"))
    files = []
    for kind, (profile, hit, miss) in KINDS.items():
        files.append(write(d, "hit-" + kind, profile + hit))
        if miss:
            files.append(write(d, "miss-" + kind, profile + miss))
    two = server_rule() + ("    - id: busy\n"
                           "      match: {path: /api/v1/devices/*/nowhere}\n"
                           "      fault: {kind: status, code: 503}\n")
    files.append(write(d, "two-rules", APP % {"window": 0} + two))
    db = os.path.join(d, "runs.db")
    r = sim("run", *files, "-q", "-j", JOBS, "--work", work, "--db", db)
    assert r.returncode in (0, 1), f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return db


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_fault_that_happens_passes_fault_fired(runs, kind):
    rows = fault_fired_rows(runs, "hit-" + kind)
    assert rows, f"no fault-fired check for hit-{kind}"
    assert all(ok for ok, _ in rows), rows
    if kind == "server":
        assert any("server rule cut-" in det and "applied 1 time" in det for _, det in rows), rows


@pytest.mark.parametrize("kind", sorted(k for k, v in KINDS.items() if v[2]))
def test_a_fault_that_cannot_happen_fails_fault_fired(runs, kind):
    rows = fault_fired_rows(runs, "miss-" + kind)
    assert rows, f"no fault-fired check for miss-{kind}"
    assert not all(ok for ok, _ in rows), rows
    failed = failed_invariants(runs)
    cases = [c for c in failed if c == "miss-" + kind or c.startswith("miss-%s/" % kind)]
    assert cases and all("fault-fired" in failed[c] for c in cases), failed
    if kind == "server":
        assert any(not ok and "cut-" in det and "never applied" in det for ok, det in rows)


def test_each_server_rule_is_its_own_check(runs):
    rows = fault_fired_rows(runs, "two-rules")
    by_rule = {det.split()[2]: ok for ok, det in rows}
    assert len(by_rule) == 2, rows
    assert [ok for rule, ok in sorted(by_rule.items())] == [0, 1], rows  # busy-N, cut-N
    assert all(rule.rsplit("-", 1)[0] in ("busy", "cut") for rule in by_rule)


def test_corrupt_bootenv_takes_no_trigger(work, tmp_path):
    path = write(str(tmp_path), "bootenv-trigger",
                 ROOTFS + "fault: {kind: corrupt-bootenv, trigger: {state: %s}}\n" % NEVER)
    r = sim("run", path, "-q", "--work", work, "--db", str(tmp_path / "runs.db"))
    assert r.returncode == 2, r.stderr
    assert "corrupt-bootenv" in r.stderr and "no trigger" in r.stderr


# ------------------------------------------------------- named fault points

def agent_without_fault_points():
    """The build's agent if it was built without fault points, else the
    ota-agent-no-fault-points target (test builds make it)."""
    import subprocess
    agent = os.path.join(BUILD, "agent", "ota-agent")
    out = subprocess.run([agent, "--build-info"], capture_output=True, text=True).stdout
    if "fault-points: off" in out:
        return agent
    other = os.path.join(BUILD, "agent", "ota-agent-no-fault-points")
    assert os.access(other, os.X_OK), f"{other} missing: build the target"
    return other


@pytest.mark.parametrize("name", ["power-loss-switching-fault-points",
                                  "power-loss-during-env-update"])
def test_fault_point_scenario_on_an_agent_without_them_is_not_run(work, tmp_path, name):
    agent = agent_without_fault_points()
    db = str(tmp_path / "runs.db")
    junit = str(tmp_path / "junit.xml")
    r = sim("run", os.path.join(HERE, name + ".yaml"), "-q", "--work", work, "--db", db,
            "--agent", agent, "--junit", junit)
    assert r.returncode == 4, f"exit {r.returncode}\n{r.stderr}"
    assert "built without named fault points" in r.stderr, r.stderr
    assert "cmake -DOTA_FAULT_POINTS=ON" in r.stderr, r.stderr
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT outcome, detail FROM trials").fetchall()
    finally:
        con.close()
    assert rows and all(o == "not-run" for o, _ in rows), rows
    assert all("OTA_FAULT_POINTS=ON" in d for _, d in rows)
    with open(junit) as f:
        xml = f.read()
    assert "<skipped" in xml and "<failure" not in xml and "<error" not in xml
