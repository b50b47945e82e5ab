"""The fleet calibration (docs/fleet.md "Calibration"): the 50-device
calibration fleet, run with in-process devices (the agent core in ota-sim) and
again with every device a real ota-agent process on a simulated device of the
native tier, same seed, ends the same on every device: running version, agent
state, rollback, the final report on the rollout's release; and the rollout
ends the same. `make bench-fleet` runs it with 500 devices.

scenarios/fleet/calibration/ is outside test_fleet.py's every-file loop (it
lists the top level of scenarios/fleet/ only): this file runs it.

    OTA_BUILD_DIR=build /usr/bin/python3 -m pytest scenarios/test_fleet_calibration.py
"""
import os
import re

from conftest import HERE, JOBS, sim

CALIBRATION = os.path.join(HERE, "fleet", "calibration", "calibration.yaml")
SILENT = os.path.join(HERE, "fleet", "calibration", "calibration-silent.yaml")
ROW = re.compile(r"^  (d\d{6}) (\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)$", re.M)


def test_native_devices_end_as_the_in_process_ones(work):
    jobs = str(max(4, int(JOBS)))
    p = sim("fleet-calibrate", CALIBRATION, "-q", "--table", "-j", jobs, "--work", work,
            timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "0 differences" in p.stdout and p.stdout.rstrip().endswith("SAME"), p.stdout
    rows = ROW.findall(p.stdout)
    assert len(rows) == 50, p.stdout
    # outcomes differ per device: the bad release's draw rolled some back
    bad = [r for r in rows if r[3] == "bad"]
    good = [r for r in rows if r[3] == "-"]
    assert bad and good, p.stdout
    assert all(r[4] == "1.0.0" and r[6] == "rolled-back" and r[7] == "failure" for r in bad), \
        p.stdout
    assert all(r[4] == "2.0.0" and r[6] == "-" and r[7] == "success" for r in good), p.stdout
    assert all(r[5] == "IDLE" for r in rows), p.stdout


def test_offline_and_late_devices_stay_silent_in_both_runs(work):
    """calibration-silent.yaml: offline devices register and are never heard of
    again, late ones are silent until after the run; the native devices must
    keep the same silence (shown failing with the native run's late rule
    dropped: the late devices then took the release)."""
    jobs = str(max(4, int(JOBS)))
    p = sim("fleet-calibrate", SILENT, "-q", "--table", "-j", jobs, "--work", work, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "0 differences" in p.stdout and p.stdout.rstrip().endswith("SAME"), p.stdout
    rows = ROW.findall(p.stdout)
    assert len(rows) == 24, p.stdout
    silent = [r for r in rows if r[3] in ("off", "late")]
    heard = [r for r in rows if r[3] == "-"]
    assert {r[3] for r in silent} == {"off", "late"} and heard, p.stdout
    assert all(r[4] == "1.0.0" and r[7] == "none" for r in silent), p.stdout
    assert all(r[4] == "2.0.0" and r[7] == "success" for r in heard), p.stdout
    assert "rollout running" in p.stdout, p.stdout


def test_what_the_native_run_cannot_reproduce_is_refused(tmp_path, work):
    text = open(CALIBRATION).read()
    assert "\n  count: 50\n" in text
    text = text.replace("\n  count: 50\n", "\n  count: 50\n  bandwidth: 1MiB\n")
    path = tmp_path / "bandwidth.yaml"
    path.write_text(text)
    p = sim("fleet-calibrate", str(path), "-q", "--work", work, timeout=60)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "bandwidth" in p.stderr, p.stderr
