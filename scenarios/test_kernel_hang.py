"""Kernels that hang, the watchdog and recovery mode (scenarios/README.md,
"Kernels that hang, the watchdog, recovery mode"; docs/DESIGN.md, "The A/B
boot contract"). The passing scenarios are run by test_scenarios.py; here the
ones that must fail, each failing exactly the invariant that says why.

Run with Debian's Python: OTA_BUILD_DIR=build /usr/bin/python3 -m pytest
scenarios/test_kernel_hang.py"""
import os
import sqlite3

from conftest import HERE, JOBS, failed_invariants, sim


def run(path, work, tmp_path):
    """ota-sim run: the result, the failed invariants, the trials' details
    (the first failed check, which the FAIL line prints)."""
    db = str(tmp_path / "runs.db")
    r = sim("run", path, "-q", "-j", JOBS, "--work", work, "--db", db)
    con = sqlite3.connect(db)
    try:
        details = [d for (d,) in con.execute("SELECT detail FROM trials")]
    finally:
        con.close()
    return r, failed_invariants(db), details


def test_a_hang_without_watchdog_fails_device_not_hung(work, tmp_path):
    r, failed, details = run(os.path.join(HERE, "hang", "rootfs-kernel-hang-no-watchdog.yaml"),
                             work, tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    names = [n for ns in failed.values() for n in ns]
    assert "device-not-hung" in names, failed
    assert "recovery-mode" not in names, failed
    assert details[0].startswith("device-not-hung: the kernel of 2.0.0 hung"), details


def test_the_same_hang_with_the_watchdog_passes(work, tmp_path):
    r, failed, _ = run(os.path.join(HERE, "rootfs-kernel-hang.yaml"), work, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert failed == {}, failed


def test_recovery_mode_fails_where_it_is_not_expected(work, tmp_path):
    """Both slots bad without `expect: {recovery: true}`: the trial fails, and
    the first failure named is recovery-mode (the device is safe but needs a
    reflash), not a generic "does not boot"."""
    text = open(os.path.join(HERE, "rootfs-both-slots-bad.yaml")).read()
    assert "expect: {recovery: true, report: none}" in text
    path = tmp_path / "both-bad-unexpected.yaml"
    path.write_text(text.replace("expect: {recovery: true, report: none}",
                                 "expect: {version: \"1.0.0\", slot: a, report: failure}"))
    r, failed, details = run(str(path), work, tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    names = [n for ns in failed.values() for n in ns]
    assert "recovery-mode" in names, failed
    assert details[0].startswith("recovery-mode: recovery mode: both slots failed"), details
