"""Rootfs A/B updates of the real ota-agent, end to end, with the real
libubootenv: rootA/rootB are image files, the U-Boot env a file made by
mkenvimage and read back with fw_printenv, and otadev.Bootloader plays
U-Boot's bootcount logic between the agent's runs (DESIGN.md, "Rootfs
update").

Covered: a good update (trial boot, reboot, health check, commit; success
reported only after the commit), an image that does not boot (the bootloader
falls back, the agent reports it), kill -9 at each state up to the reboot
(the next run recovers and the update still succeeds), kill -9 in the health
check after the reboot (rolled back with a reboot into A), and a corrupt boot
env (bad CRC: the rootfs release is refused before anything is downloaded,
the env is not rewritten, and app updates, which never touch the env, still
go through)."""

import os

import pytest

import otadev

IMAGE_SIZE = 2 << 20


@pytest.fixture(scope="module")
def world(make_world):
    w = make_world("rootfs-releases")
    work = w["work"]
    w["images"] = images = {
        "raw": otadev.make_image(work, "rootfs-2.0.0", IMAGE_SIZE, "raw"),
        "gz": otadev.make_image(work, "rootfs-2.0.0-gz", IMAGE_SIZE, "gz"),
        "broken": otadev.make_image(work, "rootfs-2.0.0-broken", 1 << 20, "raw", broken=True),
    }
    for name, (path, _) in images.items():
        w.publish(f"rootfs-{name}", path, "2.0.0", kind="rootfs")
    w["v1"] = otadev.make_package(work, "video-app", "1.0.0", "tar.gz")
    v2 = otadev.make_package(work, "video-app-v2", "2.0.0", "deb")
    w.publish("app-v2", v2, "2.0.0")
    return w


@pytest.fixture
def device(world, make_device):
    def make(release=None, warm=False, **kw):
        """A device on rootfs A and app slot a; warm: it ran the agent once
        (registered, nothing offered) before release is offered to it."""
        kw.setdefault("health_window", 1)
        return make_device(world, world["v1"], "rdev", release, warm=warm, rootfs=True, **kw)

    return make


def said(r):
    """The agent's own error lines on stderr (its state lines left out)."""
    return "\n".join(l for l in r.stderr.splitlines() if not l.startswith("OTA-STATE "))


def finals(world, dev):
    return [r["status"] for r in world["server"].final_reports(dev.id)]


def assert_trial_boot_set(dev, image):
    """After the first run of a rootfs update: reboot asked, env set for a
    trial boot of B, B holds the image, A untouched, nothing final reported."""
    rfs = dev.rootfs
    assert rfs.reboot_requested(), "the agent did not ask for a reboot"
    st = dev.status()
    assert st["state"] == "REBOOTING" and st["target_slot"] == "b"
    env = rfs.env()
    assert (env["boot_part"], env["upgrade_available"], env["bootcount"]) == ("B", "1", "0")
    assert env["bootcmd"] == "run ota_boot"  # the agent keeps what it does not own
    assert rfs.read("b", len(image)) == image


def commit_after_boot(world, dev, image, rootA):
    """Boots B with the bootloader model, runs the agent: health check, commit."""
    assert otadev.Bootloader(dev.rootfs).boot() == "b"
    assert dev.rootfs.env()["bootcount"] == "1"
    r = dev.agent("update")
    assert r.returncode == 0, r.stderr
    assert [l["to"] for l in otadev.state_lines(r.stderr)][:3] == ["HEALTH_CHECK", "COMMITTING",
                                                                   "IDLE"]
    env = dev.rootfs.env()
    assert (env["boot_part"], env["upgrade_available"], env["bootcount"]) == ("B", "0", "0")
    assert env["bootcmd"] == "run ota_boot"
    assert dev.rootfs.read("b", len(image)) == image
    assert dev.rootfs.digest("a") == rootA
    assert finals(world, dev) == ["success"]
    st = dev.status()
    assert st["state"] == "IDLE" and st["rootfs"] == {"version": "2.0.0", "slot": "b"}
    assert st["outbox"] == 0
    # The next boot is a plain one: no count, B stays.
    assert otadev.Bootloader(dev.rootfs).boot() == "b"
    assert dev.rootfs.env()["bootcount"] == "0"


@pytest.mark.parametrize("fmt", ["raw", "gz"])
def test_rootfs_update_reboot_then_commit(world, device, fmt):
    dev = device(f"rootfs-{fmt}")
    _, image = world["images"][fmt]
    rootA = dev.rootfs.digest("a")
    r = dev.agent("update")
    assert r.returncode == 0, r.stderr
    assert [l["to"] for l in otadev.state_lines(r.stderr)] == [
        "CHECKING", "DOWNLOADING", "VERIFYING", "INSTALLING", "SWITCHING", "REBOOTING"]
    assert_trial_boot_set(dev, image)
    assert dev.rootfs.digest("a") == rootA
    assert dev.rootfs.booted() == "a"
    assert finals(world, dev) == [], "a final report before the reboot and the commit"
    commit_after_boot(world, dev, image, rootA)
    # Nothing more to do, and the app was never touched.
    r = dev.agent("update")
    assert r.returncode == 0, r.stderr
    assert dev.current() == "a" and dev.app_version()["version"] == "1.0.0"
    assert finals(world, dev) == ["success"]


def test_rootfs_that_does_not_boot_falls_back(world, device):
    dev = device("rootfs-broken")
    _, image = world["images"]["broken"]
    rootA = dev.rootfs.digest("a")
    r = dev.agent("update")
    assert r.returncode == 0, r.stderr
    assert_trial_boot_set(dev, image)
    boot = otadev.Bootloader(dev.rootfs)
    assert boot.boot() == "a"
    # bootlimit 3: three tries of B, then the fourth count falls back to A.
    assert boot.log == [("b", False)] * 3 + [("a", True)]
    env = dev.rootfs.env()
    assert (env["boot_part"], env["upgrade_available"]) == ("A", "0")
    assert finals(world, dev) == []
    r = dev.agent("update")
    assert r.returncode == 1, r.stderr
    assert "fell back" in said(r), r.stderr
    assert not dev.rootfs.reboot_requested()  # A runs: no reboot needed
    env = dev.rootfs.env()
    assert (env["boot_part"], env["upgrade_available"], env["bootcount"]) == ("A", "0", "0")
    assert env["bootcmd"] == "run ota_boot"
    assert dev.rootfs.digest("a") == rootA
    reps = world["server"].final_reports(dev.id)
    assert [x["status"] for x in reps] == ["failure"]
    assert "fell back" in reps[0]["reason"]
    st = dev.status()
    assert st["state"] == "IDLE" and st["rootfs"] == {"version": "1.0.0", "slot": "a"}
    assert st["history"][0]["status"] == "failure"
    # The next power-on is a plain boot of A, and the offer is not taken again.
    assert otadev.Bootloader(dev.rootfs).boot() == "a"
    r = dev.agent("update")
    assert r.returncode == 0, r.stderr
    assert finals(world, dev) == ["failure"]


# kill -9 right after the agent enters each state before the reboot; the next
# run recovers (downloads on, verifies again, installs again over a half
# written slot, sets the env again, asks for the reboot that never came), and
# after the bootloader the update commits.
@pytest.mark.parametrize("state", ["DOWNLOADING", "VERIFYING", "INSTALLING", "SWITCHING",
                                   "REBOOTING"])
def test_kill9_before_reboot_recovers(world, device, state):
    dev = device("rootfs-gz")
    _, image = world["images"]["gz"]
    rootA = dev.rootfs.digest("a")
    env_before = dev.rootfs.env()
    world["server"].faults([otadev.fault("throttle", "/api/v1/releases/rootfs-gz/payload",
                                         bytes_per_s=4 << 20)])
    proc = dev.spawn("update")
    seen = otadev.kill_at_state(proc, state)
    world["server"].faults([])
    assert seen is not None, f"agent never reached {state}"
    if state in ("DOWNLOADING", "VERIFYING", "INSTALLING"):
        # The env is written only in SWITCHING.
        assert dev.rootfs.env() == env_before
    if state == "INSTALLING":
        # Whatever the kill left in B is garbage now.
        with open(dev.rootfs.b, "r+b") as f:
            f.write(b"\xa5" * 4096)
    if dev.rootfs.reboot_requested():
        os.unlink(dev.rootfs.marker)  # the kill raced the reboot request: undo it
    assert finals(world, dev) == []
    r = dev.agent("update")
    assert r.returncode == 0, r.stderr
    assert_trial_boot_set(dev, image)
    assert dev.rootfs.digest("a") == rootA
    assert finals(world, dev) == []
    commit_after_boot(world, dev, image, rootA)


def test_kill9_in_health_check_after_reboot_rolls_back(world, device):
    dev = device("rootfs-raw", health_window=5)
    _, image = world["images"]["raw"]
    rootA = dev.rootfs.digest("a")
    r = dev.agent("update")
    assert r.returncode == 0, r.stderr
    assert otadev.Bootloader(dev.rootfs).boot() == "b"
    proc = dev.spawn("update")
    assert otadev.kill_at_state(proc, "HEALTH_CHECK") is not None
    # Restart: the interrupted check cannot vouch for B. Back to A, and since
    # B runs, the agent asks for a reboot into A.
    r = dev.agent("update")
    assert r.returncode == 0, r.stderr
    assert [l["to"] for l in otadev.state_lines(r.stderr)] == ["ROLLING_BACK"]
    assert dev.rootfs.reboot_requested()
    env = dev.rootfs.env()
    assert (env["boot_part"], env["upgrade_available"], env["bootcount"]) == ("A", "0", "0")
    assert finals(world, dev) == []
    assert otadev.Bootloader(dev.rootfs).boot() == "a"
    r = dev.agent("update")
    assert r.returncode == 1, r.stderr
    assert "interrupted" in said(r), r.stderr
    reps = world["server"].final_reports(dev.id)
    assert [x["status"] for x in reps] == ["failure"]
    assert dev.rootfs.digest("a") == rootA
    st = dev.status()
    assert st["state"] == "IDLE" and st["rootfs"] == {"version": "1.0.0", "slot": "a"}


def test_corrupt_boot_env_rootfs_update_fails_cleanly(world, device):
    dev = device(warm=True)
    rootA = dev.rootfs.digest("a")
    dev.rootfs.corrupt_env()
    env_bytes = dev.rootfs.env_bytes()
    assert otadev.run(["fw_printenv", "-c", dev.rootfs.env_config], check=False).returncode != 0
    rootB = dev.rootfs.digest("b")
    n = len(world["server"].downloads())
    world["server"].offer("rootfs-raw", device_id=dev.id)
    r = dev.agent("update")
    assert r.returncode == 1, r.stderr
    assert "release refused" in said(r) and "bad CRC" in said(r), r.stderr
    assert dev.rootfs.env_bytes() == env_bytes, "the agent rewrote a corrupt env"
    assert dev.rootfs.digest("a") == rootA
    # Refused before anything was downloaded or written.
    assert world["server"].downloads()[n:] == []
    assert dev.rootfs.digest("b") == rootB
    assert not dev.rootfs.reboot_requested()
    reps = world["server"].final_reports(dev.id)
    assert [x["status"] for x in reps] == ["failure"]
    assert "bad CRC" in reps[0]["reason"]
    st = dev.status()
    assert st["state"] == "IDLE" and st["rootfs"]["slot"] == "a"
    assert dev.current() == "a" and dev.app_version()["version"] == "1.0.0"
    # The device is not stuck: an app update still goes through.
    world["server"].offer("app-v2", device_id=dev.id)
    r = dev.agent("update")
    assert r.returncode == 0, r.stderr
    assert dev.current() == "b" and dev.app_version()["version"] == "2.0.0"
    assert dev.rootfs.env_bytes() == env_bytes


def test_corrupt_boot_env_does_not_block_app_update(world, device):
    dev = device("app-v2", health_window=2)
    dev.rootfs.corrupt_env()
    env_bytes = dev.rootfs.env_bytes()
    rootA = dev.rootfs.digest("a")
    r = dev.agent("update")
    assert r.returncode == 0, r.stderr
    assert dev.current() == "b" and dev.app_version()["version"] == "2.0.0"
    assert finals(world, dev) == ["success"]
    assert dev.rootfs.env_bytes() == env_bytes
    assert dev.rootfs.digest("a") == rootA
