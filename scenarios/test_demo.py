"""`make demo`'s second part (ci/demo --harness-only, ci/demo_harness.py) on
the build under test, small: the power cut at SWITCHING and its recovery, a
matrix sample of a few cases with the progress line, the report and the
command that opens it; and its failure path (a trial that fails makes the
demo say so, name the invariant and the reproduce command, and exit 1).
The whole demo, with its own Release build, is `make demo` (README).

    OTA_BUILD_DIR=build /usr/bin/python3 -m pytest scenarios/test_demo.py
"""
import os
import re
import subprocess

from conftest import BUILD, SIM, SRC

DEMO = os.path.join(SRC, "ci", "demo")
UNMET = """description: power cut at SWITCHING, expecting a version no release has
device: {profile: app, health_window_ms: 1000}
releases:
  - {version: "1.0.0", variant: video-app, factory: true}
  - {version: "2.0.0", variant: video-app-v2}
fault: {kind: power-cut, trigger: {state: SWITCHING}}
expect: {version: "9.9.9", slot: b, report: success, recover_within_s: 30}
"""


def demo(*args):
    assert os.path.exists(SIM), f"{SIM} not built"
    env = dict(os.environ, OTA_BUILD_DIR=BUILD, OTA_SOURCE_DIR=SRC)
    return subprocess.run([DEMO, "--harness-only", *args], env=env, capture_output=True,
                          text=True, timeout=600, cwd=SRC)


def test_demo_harness_shows_the_cut_the_recovery_and_the_report(tmp_path):
    out = tmp_path / "demo"
    r = demo("--sample", "6", "--out", str(out))
    text = r.stdout + r.stderr
    assert r.returncode == 0, text
    # the states before the cut, the cut, the resume after the reboot, the commit
    cut = text.index("** POWER CUT (state:SWITCHING)")
    assert re.search(r"INSTALLING -> SWITCHING", text[:cut]), text
    after = text[cut:]
    assert re.search(r"agent finds SWITCHING in its journal and resumes", after), text
    assert re.search(r"SWITCHING -> HEALTH_CHECK.*\n.*HEALTH_CHECK -> COMMITTING.*\n.*"
                     r"COMMITTING -> IDLE +success", after), text
    assert "final: version 2.0.0, slot b, report success" in text
    held = re.search(r"invariants held \((\d+) of (\d+)\): (.*)", text)
    assert held and held.group(1) == held.group(2) and "expected-outcome" in held.group(3), text
    # the matrix sample, with ota-sim's progress line (plain lines, not a tty)
    assert re.search(r"^\[6/6\] pass 6  fail 0", r.stderr + r.stdout, re.M), text
    assert len((out / "matrix-cases.txt").read_text().split()) == 6
    # the report, and the command that opens it
    page = out / "report" / "report.html"
    assert page.exists() and "<html" in page.read_text()[:500].lower()
    assert re.search(r"open it:  xdg-open \S*report\.html", text), text
    assert r.stdout.rstrip().endswith("harness passed: power cut at SWITCHING recovered; matrix "
                                  "sample passed; report written"), text[-500:]


def test_demo_harness_fails_when_a_trial_fails(tmp_path):
    unmet = tmp_path / "unmet.yaml"
    unmet.write_text(UNMET)
    out = tmp_path / "demo"
    r = demo("--sample", "2", "--out", str(out), "--scenario", str(unmet))
    text = r.stdout + r.stderr
    assert r.returncode == 1, text
    assert "invariant FAILED: expected-outcome" in text, text
    assert re.search(r"reproduce: \S*ota-sim run \S*unmet.yaml", text), text
    assert "harness FAILED: not power cut at SWITCHING recovered" in text, text
    assert (out / "report" / "report.html").exists()  # the rest still ran
