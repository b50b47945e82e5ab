"""ota-sim's interface to CI (docs/ci.md): the exit codes of `run` and `matrix`, the JUnit
names, and the report's file names. ci/templates/ rely on them: a change here is a change
for every team that copied a template, so it breaks this test first.

    OTA_BUILD_DIR=build /usr/bin/python3 -m pytest -q scenarios/test_ci_interface.py
"""
import os
import subprocess
import xml.etree.ElementTree as ET

import pytest

from conftest import BUILD, HERE, SRC, sim

GOOD = os.path.join(HERE, "app-update-good.yaml")
FAULT_POINTS = os.path.join(HERE, "power-loss-switching-fault-points.yaml")
REAL = os.path.join(BUILD, "agent", "ota-agent")
REPORT = os.path.join(SRC, "reports", "ota-report")

# A stand-in for an agent: answers every command with success and changes nothing. The
# update never happens: the invariants fail the trial (the agent's failure, not the
# harness's). FAULT_POINTS: what it says to --build-info.
NOOP_AGENT = """#!/bin/sh
[ "$1" = --build-info ] && echo "fault-points: FAULT_POINTS"
exit 0
"""


def stand_in(tmp_path, fault_points="on"):
    p = tmp_path / ("agent-" + fault_points)
    p.write_text(NOOP_AGENT.replace("FAULT_POINTS", fault_points))
    p.chmod(0o755)
    return str(p)


def run_sim(tmp_path, *args, work=None):
    """ota-sim with its own database and JUnit file in tmp_path: (process, junit path)."""
    junit = str(tmp_path / "junit.xml")
    work = work or str(tmp_path / "work")
    p = sim(*args, "-q", "--work", work, "--db", str(tmp_path / "runs.db"), "--junit", junit,
            "--trees", str(tmp_path), timeout=600)
    return p, junit


def cases_of(junit):
    """{testcase name: (suite name, classname, child tags)} of a JUnit file."""
    root = ET.parse(junit).getroot()
    assert root.tag == "testsuites" and root.get("name") == "ota-sim"
    return {tc.get("name"): (suite.get("name"), tc.get("classname"),
                             [c.tag for c in tc])
            for suite in root.findall("testsuite") for tc in suite.findall("testcase")}


def test_all_passed_is_0_and_the_names_are_the_interface(tmp_path):
    p, junit = run_sim(tmp_path, "run", GOOD, "--agent", REAL, "--seed", "3")
    assert p.returncode == 0, p.stderr[-3000:]
    # testsuite: the scenario's name; testcase: classname ota-sim.SCENARIO, name the case id
    assert cases_of(junit) == {"app-update-good": ("app-update-good", "ota-sim.app-update-good",
                                                   [])}
    out = tmp_path / "report"
    r = subprocess.run(["/usr/bin/python3", REPORT, "--db", str(tmp_path / "runs.db"), "--out",
                        str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(out)) == ["report.html", "reproduce.txt", "summary.md",
                                       "trials.jsonl"]
    assert (out / "reproduce.txt").read_text().splitlines() == [
        "# ota-sim run 1: the reproduce commands of its 0 failed trials (docs/ci.md)"]


def test_a_failed_trial_is_1_with_its_reproduce_command(tmp_path):
    agent = stand_in(tmp_path)
    p, junit = run_sim(tmp_path, "run", GOOD, "--agent", agent, "--seed", "5")
    assert p.returncode == 1, p.stderr[-3000:]
    assert cases_of(junit)["app-update-good"][2] == ["failure"]
    text = ET.parse(junit).getroot().find("testsuite/testcase/failure").text
    repro = [l for l in text.splitlines() if l.startswith("reproduce: ")]
    # the reproduce command: ota-sim run FILE --fault KIND --trigger T --seed N --agent BIN --keep
    assert repro == ["reproduce: %s run %s --fault none --trigger start --seed 5 --agent %s --keep"
                     % (os.path.realpath(os.path.join(BUILD, "sim", "ota-sim")), GOOD, agent)]


@pytest.mark.parametrize("what,args,says", [
    ("no such scenario file", ["run", "/nonexistent/x.yaml"], "No such file"),
    ("bad scenario file", ["run", "BAD"], "BAD"),
    ("unknown option", ["run", GOOD, "--no-such-option"], "usage:"),
    ("no scenario", ["run"], "name at least one scenario file"),
    ("--trigger without --fault", ["run", GOOD, "--trigger", "start"], "--trigger needs --fault"),
    ("bad --seed", ["run", GOOD, "--seed", "12x"], "--seed: a whole number"),
    ("bad --jobs", ["matrix", "-j", "0"], "--jobs: 1..64"),
    ("no such --agent", ["run", GOOD, "--agent", "/nonexistent/ota-agent"],
     "--agent /nonexistent/ota-agent"),
    ("no such --image", ["run", GOOD, "--target", "qemu", "--image", "/nonexistent/img"],
     "--image /nonexistent/img"),
    ("no such --guest-agent", ["run", GOOD, "--target", "qemu", "--guest-agent", "/nonexistent/a"],
     "--guest-agent /nonexistent/a"),
    ("no such --matrix", ["matrix", "--matrix", "/nonexistent/matrix.yaml"],
     "--matrix /nonexistent/matrix.yaml"),
    ("no such --case", ["matrix", "--case", "app-update-good/power-cut@state:NOWHERE"],
     "no case 'app-update-good/power-cut@state:NOWHERE'"),
    ("--case with run", ["run", GOOD, "--case", "x"], "--case and --cases-from go with matrix"),
    ("bad --target", ["run", GOOD, "--target", "mars"], "--target: native or qemu"),
    ("bad --qemu-cpus", ["run", GOOD, "--target", "qemu", "--qemu-cpus", "0"], "--qemu-cpus: 1..8"),
    ("--qemu-cpus natively", ["run", GOOD, "--qemu-cpus", "1"],
     "--snapshot and --qemu-cpus go with --target qemu"),
])
def test_usage_and_bad_input_is_2(tmp_path, what, args, says):
    bad = tmp_path / "bad.yaml"
    bad.write_text("device: {profile: app}\nno_such_key: 1\n")
    args = [str(bad) if a == "BAD" else a for a in args]
    says = str(bad) if says == "BAD" else says
    p, junit = run_sim(tmp_path, *args)
    assert p.returncode == 2, "%s: exit %d\n%s" % (what, p.returncode, p.stderr[-2000:])
    assert says in p.stderr, p.stderr[-2000:]
    assert not os.path.exists(junit), "nothing ran: no JUnit file"


def test_nothing_failed_but_not_run_is_4(tmp_path):
    agent = stand_in(tmp_path, fault_points="off")
    p, junit = run_sim(tmp_path, "run", FAULT_POINTS, "--agent", agent)
    assert p.returncode == 4, p.stderr[-3000:]
    assert "cmake -DOTA_FAULT_POINTS=ON" in p.stderr
    assert list(cases_of(junit).values())[0][2] == ["skipped"]


def test_harness_error_is_5(tmp_path):
    """The harness cannot do its work (its cache cannot be written): no trial is blamed."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "cache").write_text("a file where the cache directory goes\n")
    p, _ = run_sim(tmp_path, "run", GOOD, "--agent", REAL, work=str(work))
    assert p.returncode == 5, p.stderr[-3000:]
    assert "FAIL" not in p.stderr and "cache" in p.stderr, p.stderr[-2000:]


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["matrix", "--list"]])
def test_help_and_list_are_0(tmp_path, args):
    # (--trees: a --list run leaves its recordings' server dirs in the trees dir)
    p = sim(*args, "--work", str(tmp_path / "work"), "--trees", str(tmp_path)) \
        if args[0] != "--help" else sim(*args)
    assert p.returncode == 0, p.stderr[-2000:]
    if args[-1] == "--list":
        assert "app-update-good/power-cut@state:SWITCHING" in p.stdout.splitlines()
    else:
        assert "Exit: 0 all passed, 1 a trial failed, 2 usage or bad input" in p.stdout
