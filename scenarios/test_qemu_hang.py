"""Boots that hang, on the QEMU tier's emulated Raspberry Pi 3B (issue 16):
the real agent, real U-Boot and boot.scr, a kernel that really hangs.

- kernel hang -> watchdog -> fallback: a rootfs update whose new slot's kernel
  hangs at every boot without resetting (scenarios/qemu/rootfs-kernel-hang.yaml:
  boot.scr's ota_fault_hang=b puts ota.test=hang on slot b's command line; the
  initramfs sets kernel.panic=0 and exits). QEMU's model of the Pi's watchdog
  does not count down, so the harness is the watchdog (sim/src/qtrial.c "The
  harness watchdog"): it resets each hung boot with QMP system_reset; boot.scr
  counts each reset as a failed trial boot, falls back to A past bootlimit=3,
  and the agent reports the failure from A.
- the same with the watchdog off (qemu/rootfs-kernel-hang-no-watchdog.yaml,
  device.watchdog: false -> boot.scr's ota_watchdog=0, no arming line):
  nothing resets the hung kernel and the trial fails device-not-hung.
- both slots bad (rootfs-both-slots-bad.yaml, the native tier's scenario as
  it is): 2.0.0 does not boot (three resets by panic=1), boot.scr falls back
  to A, whose kernel now hangs (kernel-hang of 1.0.0 from the trial reboot
  on): three watchdog resets, and past 2 x bootlimit boot.scr boots recovery
  mode, which the console shows and the trial expects.

Each is one raspi3b trial of 6-8 boots: about 5-9 minutes each under TCG on
the shared 2-core machine (load 10+), so this file is its own CTest test
(pytest-qemu-hang), not part of test_qemu.py's smoke set.
"""
import os
import sqlite3
import pytest

from conftest import HERE, sim

SCENARIO = os.path.join(HERE, "qemu", "rootfs-kernel-hang.yaml")
NO_WATCHDOG = os.path.join(HERE, "qemu", "rootfs-kernel-hang-no-watchdog.yaml")
BOTH_BAD = os.path.join(HERE, "rootfs-both-slots-bad.yaml")


def _run(image, work, tmp_path, scenario=SCENARIO):
    db = str(tmp_path / "runs.db")
    p = sim("run", scenario, "--target", "qemu", "--profile", "raspi3b", "--image", image,
            "--work", work, "--db", db, timeout=2400)
    return p, db


def _trial(db):
    con = sqlite3.connect(db)
    try:
        row = con.execute("SELECT outcome, target, fired, logs, final_version, final_report "
                          "FROM trials").fetchone()
        checks = dict(con.execute("SELECT name, detail FROM invariants WHERE ok = 0").fetchall())
        gaps = [r[0] for r in con.execute("SELECT detail FROM run_gaps WHERE kind = 'not-modelled'")]
    finally:
        con.close()
    # every QEMU run says what the harness does in place of the Pi's watchdog
    assert any("the harness is the watchdog" in g for g in gaps), gaps
    return row, checks


def test_qemu_kernel_hang_watchdog_fallback(image, work, tmp_path):
    p, db = _run(image, work, tmp_path)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-6000:]
    (outcome, target, fired, logs, version, report), _ = _trial(db)
    assert (outcome, target, fired) == ("pass", "qemu", 1)
    assert (version, report) == ("1.0.0", "failure")  # rolled back to the factory slot
    files = logs.split()
    console = open(files[0], errors="replace").read()  # one power-on: resets, not power cuts
    wdt = [f for f in files if f.endswith("watchdog.log")]
    assert len(wdt) == 1, logs
    resets = open(wdt[0]).read().splitlines()
    # three trial boots of b, each hung and reset by the (harness) watchdog
    assert console.count("OTA-BOOT: ota.test=hang") == 3, console[-3000:]
    assert "OTA-BOOT-FAIL" not in console  # hung before the (small) 2.0.0 root was looked at
    assert len(resets) == 3 and all("a kernel panic, then nothing" in r and
                                    "system_reset" in r for r in resets), resets
    for n in (1, 2, 3):
        assert f"OTA-UBOOT: boot_part=B bootcount={n} upgrade_available=1" in console
    assert "OTA-UBOOT: slot B failed 3 trial boots: falling back" in console
    # every boot armed the watchdog: A, three times B, A after the fallback
    assert console.count("OTA-UBOOT: watchdog armed: 15 s") == 5
    assert console.count("U-Boot 20") == 5
    # the agent on A after the fallback: the rollback reported
    tail = console[console.index("falling back"):]
    assert '"to":"IDLE"' in tail and '"status":"failure"' in tail, tail[-3000:]


@pytest.mark.qemu_full
def test_qemu_kernel_hang_without_watchdog_is_a_hung_device(image, work, tmp_path):
    """The check can fail: with boot.scr's watchdog off nothing resets the
    hung kernel; the harness says the device hangs (device-not-hung) instead
    of waiting out the trial's timeout."""
    p, db = _run(image, work, tmp_path, NO_WATCHDOG)
    assert p.returncode == 1, p.stdout[-3000:] + p.stderr[-6000:]
    (outcome, target, fired, logs, _, _), failed = _trial(db)
    assert (outcome, target, fired) == ("fail", "qemu", 1)
    assert "device-not-hung" in failed, failed
    assert failed["device-not-hung"].startswith("the kernel of 2.0.0 hung"), failed
    assert "recovery-mode" not in failed, failed
    files = logs.split()
    console = open(files[0], errors="replace").read()
    assert "OTA-UBOOT: watchdog armed" not in console
    assert console.count("OTA-BOOT: ota.test=hang") == 1
    assert console.count("U-Boot 20") == 2  # A, then B: hung there for good
    wdt = open([f for f in files if f.endswith("watchdog.log")][0]).read()
    assert "the device hangs" in wdt and "system_reset" not in wdt, wdt


@pytest.mark.qemu_full
def test_qemu_both_slots_bad_recovery_mode(image, work, tmp_path):
    p, db = _run(image, work, tmp_path, BOTH_BAD)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-6000:]
    (outcome, target, fired, logs, _, report), _ = _trial(db)
    assert (outcome, target, fired) == ("pass", "qemu", 1)
    files = logs.split()
    console = open(files[0], errors="replace").read()
    assert console.count("OTA-BOOT-FAIL") == 3  # 2.0.0: three trial boots, panic=1 resets
    assert "OTA-UBOOT: slot B failed 3 trial boots: falling back" in console
    for n in (4, 5, 6):  # A's boots after the fallback count on, and hang
        assert f"OTA-UBOOT: boot_part=A bootcount={n} upgrade_available=0" in console
    assert console.count("OTA-BOOT: ota.test=hang") == 3, console[-3000:]
    resets = open([f for f in files if f.endswith("watchdog.log")][0]).read().splitlines()
    assert len(resets) == 3 and all("system_reset" in r for r in resets), resets
    assert "OTA-UBOOT: slot A failed 3 boots after the fallback: recovery mode" in console
    assert "OTA-RECOVERY: both slots failed" in console
    assert console.count("U-Boot 20") == 8  # A, 3 x B, 3 x A, recovery
