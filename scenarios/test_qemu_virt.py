"""The QEMU tier on the virt board (the fast one), a CTest test of its own (pytest-qemu-virt) so
that CTest can run the QEMU files two by two in about the same time:

- blue-green-standby: a power cut in STANDBY, then the activation.
- rootfs-boot-failure on virt: a rootfs device boots through virt's U-Boot (u-boot-virt.bin, the
  env in FAT on the virtio disk) with the Pi's boot.scr; three trial boots of a 2.0.0 that cannot
  boot (each a kernel panic and panic=1's reset) and the fallback to A.

Mutants (aarch64 builds with one known bug, --guest-agent): commit-before-health, and in the full
set standby-switch-on-start (blue-green), each caught by a named invariant.
"""
import os
import sqlite3

import pytest

from conftest import HERE, failed_invariants, sim


def run_virt(scenario, image, work, db, *extra, timeout=1800):
    """ota-sim run of one scenarios/ file on the virt board (the CompletedProcess)."""
    return sim("run", os.path.join(HERE, scenario), "--target", "qemu", "--profile", "virt",
               "--image", image, *extra, "--work", work, "--db", db, timeout=timeout)


def test_qemu_blue_green_standby(image, work, tmp_path):
    """STANDBY on the QEMU tier (virt: the fast board): a blue_green rollout,
    power cut right after the agent made STANDBY durable; the next boot finds
    it waiting, the harness activates the rollout once the server has the
    device in standby, and only then does it switch, check and commit."""
    db = str(tmp_path / "runs.db")
    p = run_virt("blue-green-standby.yaml", image, work, db)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-6000:]
    con = sqlite3.connect(db)
    try:
        row = con.execute("SELECT outcome, target, fired, logs, final_version, final_report "
                          "FROM trials").fetchone()
        waits = con.execute("SELECT ok FROM invariants WHERE name = 'standby-waits'").fetchall()
    finally:
        con.close()
    outcome, target, fired, logs, version, report = row
    assert (outcome, target, fired) == ("pass", "qemu", 1)
    assert (version, report) == ("2.0.0", "success")
    assert waits == [(1,)]
    first, second = logs.split()
    assert "ota-fault-point: state.STANDBY" in open(first, errors="replace").read()
    assert '"from":"STANDBY","to":"SWITCHING"' in open(second, errors="replace").read()


def test_qemu_rootfs_fallback_virt(image, work, tmp_path):
    """A rootfs device on virt boots through U-Boot (u-boot-virt.bin, the env
    in FAT on the virtio disk) with the Pi's boot.scr: the 2.0.0 that cannot
    boot is written to /dev/vda3, boot.scr counts three failed trial boots of
    B, falls back to A, and the agent reports the failure."""
    db = str(tmp_path / "runs.db")
    p = run_virt("rootfs-boot-failure.yaml", image, work, db)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-6000:]
    con = sqlite3.connect(db)
    try:
        outcome, logs, version, report = con.execute(
            "SELECT outcome, logs, final_version, final_report FROM trials").fetchone()
    finally:
        con.close()
    assert (outcome, version, report) == ("pass", "1.0.0", "failure")
    console = "".join(open(l, errors="replace").read() for l in logs.split())
    assert "Loading Environment from FAT... OK" in console  # U-Boot's preboot env load
    assert "root=/dev/vda3" in console and "ota.slot=b" in console
    assert console.count("OTA-BOOT-FAIL: /dev/vda3") == 3 and "falling back" in console
    assert "OTA-UBOOT: boot_part=A bootcount=4 upgrade_available=0" in console


def test_qemu_catches_mutant(image, work, aarch64_mutants, tmp_path):
    """The QEMU checker can fail: an aarch64 agent that commits before its
    health check (ota-agent-mutant-commit-before-health, written into the
    trial's overlay with --guest-agent) keeps the crashing 2.0.0 that the
    real agent rolls back (virt: the fast board)."""
    mutant = aarch64_mutants("commit-before-health")
    db = str(tmp_path / "runs.db")
    p = run_virt("service-crash-after-switch.yaml", image, work, db, "--guest-agent", mutant,
                 timeout=1200)
    assert p.returncode == 1, p.stdout[-2000:] + p.stderr[-4000:]
    assert "--guest-agent " + mutant in p.stderr  # the reproduce line names it
    failed = failed_invariants(db)
    assert "expected-outcome" in failed.get("service-crash-after-switch", []), failed


@pytest.mark.qemu_full
def test_qemu_catches_standby_mutant(image, work, aarch64_mutants, tmp_path):
    """An aarch64 agent that switches when it starts in STANDBY
    (ota-agent-mutant-standby-switch-on-start) does so right after the power
    cut, before the rollout is activated: standby-waits."""
    mutant = aarch64_mutants("standby-switch-on-start")
    db = str(tmp_path / "runs.db")
    p = run_virt("blue-green-standby.yaml", image, work, db, "--guest-agent", mutant,
                 timeout=1200)
    assert p.returncode == 1, p.stdout[-2000:] + p.stderr[-4000:]
    failed = failed_invariants(db)
    assert "standby-waits" in failed.get("blue-green-standby/power-cut@state:STANDBY", []), failed
