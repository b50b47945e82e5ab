"""The real ota-agent, end to end, against the real ota-server on loopback:
v1 -> v2 app update, a bad v2 rolled back with a failure report, kill -9 in
each state followed by a restart that recovers per DESIGN.md's table, and
bad input that must be refused with nothing lost."""

import os
import sqlite3
import time

import pytest

import otadev

# Filler in the v2 package: the download tests below cut and throttle it at
# fixed byte counts up to ~45 KB, and without it a Release build's payload is
# only ~11 KB (so nothing was cut, and nothing resumed).
V2_PAD = 48 << 10
V2_PAYLOAD = "/api/v1/releases/v2/payload"


@pytest.fixture(scope="module")
def world(make_world):
    w = make_world("releases")
    work = w["work"]
    w["pk"] = pk = {
        "v1": otadev.make_package(work, "video-app", "1.0.0", "tar.gz"),
        "v2": otadev.make_package(work, "video-app-v2", "2.0.0", "deb", pad=V2_PAD),
        "v2-crash-after": otadev.make_package(work, "video-app-v2-crash-after", "2.0.0", "deb"),
        "v2-health-500": otadev.make_package(work, "video-app-v2-health-500", "2.0.0", "tar.gz"),
        "v2-hang": otadev.make_package(work, "video-app-v2-hang", "2.0.0", "tar.gz"),
    }
    for rid in ("v2", "v2-crash-after", "v2-health-500", "v2-hang"):
        w.publish(rid, pk[rid], "2.0.0")
    return w


@pytest.fixture
def device(world, make_device):
    def make(release=None, **kw):
        return make_device(world, world["pk"]["v1"], "dev", release, **kw)

    return make


def reports(world, dev):
    return world["server"].reports(dev.id)


def final_statuses(world, dev):
    return [r["status"] for r in reports(world, dev) if r["status"] != "in_progress"]


def test_app_update_v1_to_v2(world, device):
    dev = device("v2")
    assert dev.app_version()["version"] == "1.0.0"
    r = dev.agent("update")
    assert r.returncode == 0, r.stderr
    assert dev.current() == "b"
    v = dev.app_version()
    assert v["version"] == "2.0.0" and v["mode"] == "bw"
    lines = otadev.state_lines(r.stderr)
    assert [l["to"] for l in lines] == ["CHECKING", "DOWNLOADING", "VERIFYING", "INSTALLING",
                                        "SWITCHING", "HEALTH_CHECK", "COMMITTING", "IDLE"]
    reps = reports(world, dev)
    assert reps[-1]["status"] == "success"
    assert [r["status"] for r in reps[:-1]] == ["in_progress"] * (len(reps) - 1)
    st = dev.status()
    assert st["state"] == "IDLE" and st["app"] == {"version": "2.0.0", "slot": "b"}
    assert st["history"][0]["status"] == "success"
    assert st["outbox"] == 0
    # The last-known-good slot still holds v1, untouched.
    with open(os.path.join(dev.app_root, "a", "VERSION")) as f:
        assert f.read().strip() == "1.0.0"
    # A second pass has nothing to do.
    r = dev.agent("update")
    assert r.returncode == 0, r.stderr
    assert dev.current() == "b"


def test_check_changes_nothing(world, device):
    dev = device("v2")
    r = dev.agent("check")
    assert r.returncode == 10, r.stderr
    assert "2.0.0" in r.stdout
    assert dev.current() == "a"
    assert not os.path.exists(os.path.join(dev.data, "download", "payload.part"))


# A crashed app is seen either way round: the service check finds it gone, or
# a probe finds its port closed first (a loaded machine; seen in a CI run).
@pytest.mark.parametrize("release,why", [("v2-crash-after", ("not active", "Couldn't connect")),
                                         ("v2-health-500", ("500",)),
                                         ("v2-hang", ("health check",))])
def test_bad_release_rolled_back_with_failure_report(world, device, release, why):
    dev = device(release, health_window=6)
    r = dev.agent("update")
    assert r.returncode == 1, r.stderr
    assert any(w in r.stderr for w in why), r.stderr
    assert dev.current() == "a"
    assert dev.app_version()["version"] == "1.0.0"
    assert final_statuses(world, dev) == ["failure"]
    st = dev.status()
    assert st["app"]["version"] == "1.0.0"
    assert st["history"][0]["status"] == "failure"


# kill -9 right after the agent enters each state; the next run recovers per
# the table: the update still succeeds, except an interrupted health check,
# which rolls back.
@pytest.mark.parametrize("state", ["CHECKING", "DOWNLOADING", "VERIFYING", "INSTALLING",
                                   "SWITCHING", "HEALTH_CHECK", "COMMITTING"])
def test_kill9_in_each_state_recovers(world, device, state):
    dev = device("v2")
    world["server"].faults([otadev.fault("throttle", V2_PAYLOAD, bytes_per_s=100000)])
    proc = dev.spawn("update")
    seen = otadev.kill_at_state(proc, state)
    world["server"].faults([])
    assert seen is not None, f"agent never reached {state}"
    r = dev.agent("update")
    lines = otadev.state_lines(r.stderr)
    if state == "HEALTH_CHECK":
        assert r.returncode == 1, r.stderr
        assert lines[0]["to"] == "ROLLING_BACK"
        assert dev.current() == "a"
        assert final_statuses(world, dev) == ["failure"]
        assert dev.status()["app"]["version"] == "1.0.0"
    else:
        assert r.returncode == 0, r.stderr
        assert dev.current() == "b"
        assert dev.app_version()["version"] == "2.0.0"
        assert final_statuses(world, dev) == ["success"]
    st = dev.status()
    assert st["state"] == "IDLE" and st["outbox"] == 0
    db = sqlite3.connect(os.path.join(dev.data, "agent.db"))
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()


def downloads_since(world, n):
    return world["server"].downloads()[n:]


def assert_payload_longer(world, release, nbytes):
    """A fault at byte nbytes must fall inside the payload, or the test
    would pass or fail for the payload's size, not the agent."""
    size = os.path.getsize(world["pk"][release])
    assert size > nbytes, f"{release}'s payload is {size} bytes, the test needs > {nbytes}"


def test_kill9_mid_download_resumes_from_durable_prefix(world, device):
    dev = device("v2", agent_extra={"checkpoint_bytes": "16384", "checkpoint_interval_ms": "0"})
    assert_payload_longer(world, "v2", 45000)  # 1.5 s at 20 KB/s, and a margin
    n = len(world["server"].downloads())
    world["server"].faults([otadev.fault("throttle", V2_PAYLOAD, bytes_per_s=20000)])
    proc = dev.spawn("update")
    assert otadev.kill_at_state(proc, "DOWNLOADING") is not None
    proc2 = dev.spawn("update")
    time.sleep(1.5)  # ~30 KB at 20 KB/s: past the first checkpoint, then the "power" goes
    proc2.kill()
    proc2.wait()
    world["server"].faults([])
    r = dev.agent("update")
    assert r.returncode == 0, r.stderr
    assert dev.current() == "b"
    ranges = [d["range"] for d in downloads_since(world, n) if d["range"]]
    assert ranges, "the agent never resumed with Range"
    offset = int(ranges[-1].split("=")[1].rstrip("-"))
    assert offset >= 16384  # a durable checkpoint, not byte 0


def test_truncated_download_resumes_exact_bytes(world, device):
    dev = device("v2")
    assert_payload_longer(world, "v2", 30000)
    n = len(world["server"].downloads())
    world["server"].faults([otadev.fault("truncate", V2_PAYLOAD, count=1, after_bytes=30000)])
    r = dev.agent("update")
    world["server"].faults([])
    assert r.returncode == 0, r.stderr
    assert dev.current() == "b"
    assert dev.app_version()["version"] == "2.0.0"
    assert "bytes=30000-" in [d["range"] for d in downloads_since(world, n)]


def test_corrupt_download_refused_nothing_installed(world, device):
    dev = device("v2", agent_extra={"max_attempts": "2"})
    world["server"].faults([otadev.fault("corrupt", V2_PAYLOAD, offset=1000, length=1)])
    r = dev.agent("update")
    world["server"].faults([])
    assert r.returncode == 1
    assert "checksum" in r.stderr
    assert dev.current() == "a"
    assert not os.path.exists(os.path.join(dev.app_root, "b", "VERSION"))
    assert final_statuses(world, dev) == ["failure"]


def test_reports_wait_in_outbox_while_server_is_down(world, device):
    dev = device("v2")
    proc = dev.spawn("update")
    assert otadev.kill_at_state(proc, "SWITCHING") is not None
    # Down: every device call answered 503, until the plan is taken away.
    world["server"].faults([otadev.fault("status", "/api/v1/*", code=503)])
    try:
        r = dev.agent("update")
    finally:
        world["server"].faults([])
    assert r.returncode == 0, r.stderr
    assert dev.status()["outbox"] > 0
    r = dev.agent("update")
    assert r.returncode == 0, r.stderr
    assert dev.status()["outbox"] == 0
    assert final_statuses(world, dev) == ["success"]


def test_corrupt_database_moved_aside_device_stays(world, device):
    dev = device()
    db = os.path.join(dev.data, "agent.db")
    with open(db, "wb") as f:
        f.write(b"this is not a database" * 100)
    r = dev.agent("update")
    assert r.returncode == 0, r.stderr
    assert os.path.exists(db + ".broken")
    assert "moved aside" in r.stderr
    assert dev.current() == "a"
    assert dev.app_version()["version"] == "1.0.0"
    assert any(rep["status"] == "failure" and "moved aside" in rep["reason"]
               for rep in reports(world, dev))


def test_operator_rollback_and_status(world, device):
    dev = device("v2")
    assert dev.agent("update").returncode == 0
    assert dev.current() == "b"
    r = dev.agent("rollback")
    assert r.returncode == 0, r.stderr
    assert dev.current() == "a"
    assert dev.app_version()["version"] == "1.0.0"
    r = dev.agent("status")
    assert r.returncode == 0 and "1.0.0" in r.stdout


def test_bad_config_is_a_usage_error(world, device, tmp_path):
    dev = device()
    bad = tmp_path / "bad.conf"
    bad.write_text("[agent]\nserver = http://x\nfrobnicate = 1\n")
    r = otadev.run([otadev.agent_bin(), "--config", str(bad), "status"], check=False)
    assert r.returncode == 2
    assert "unknown key 'frobnicate'" in r.stderr
    r = otadev.run([otadev.agent_bin(), "--config", dev.config, "bogus"], check=False)
    assert r.returncode == 2


def test_github_releases_source(world):
    """The seed's flow: releases/latest -> manifest + signature assets ->
    the payload asset."""
    # A server of its own: the GitHub face serves every published release,
    # and this world's server has published the others for their devices.
    srv = world.new_server()
    dev = otadev.Device(os.path.join(world["work"], "gh-device"), srv, world["keys"],
                        world["pk"]["v1"], device_id="gh-0001",
                        agent_extra={"source": "github", "repo": "owner/repo"})
    try:
        r = dev.agent("check")
        assert r.returncode == 0 and "up to date" in r.stdout, r.stdout + r.stderr
        srv.offer("v2")  # published: the repo's latest release
        r = dev.agent("update")
        assert r.returncode == 0, r.stderr
        assert dev.current() == "b"
        assert dev.app_version()["version"] == "2.0.0"
        st = dev.status()
        assert st["history"][0]["update_id"].startswith("gh-")
        assert st["history"][0]["status"] == "success"
        assert st["outbox"] == 0
        assert srv.reports() == []  # this face has no status endpoint
    finally:
        dev.stop()


def test_daemon_polls_updates_and_stops_on_sigterm(world, device):
    dev = device(agent_extra={"poll_interval": "1", "poll_jitter": "0"})
    proc = dev.spawn("daemon")
    try:
        time.sleep(1.5)  # a poll or two with nothing offered
        world["server"].offer("v2", device_id=dev.id)
        deadline = time.time() + 60
        while time.time() < deadline and not final_statuses(world, dev):
            time.sleep(0.3)
        assert final_statuses(world, dev) == ["success"]
        assert dev.current() == "b"
        # a second instance cannot run beside the daemon
        r = dev.agent("update")
        assert r.returncode == 4 and "another ota-agent" in r.stderr
        assert dev.status()["app"]["version"] == "2.0.0"  # status needs no lock
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err


def test_a_refused_check_in_re_registers_on_the_old_token(world, device):
    """A 401 at check-in (here a fault rule; in the field a proxy) makes the
    agent register again. The server re-enrolls a known device only on its
    current token (docs/protocol.md, "Register"): the agent presents the
    token it was refused with first, so it gets back in without an admin."""
    dev = device(warm=True)
    srv = world["server"]
    n_regs = len([x for x in srv.requests() if x["path"] == "/api/v1/devices/register"])
    srv.faults([otadev.fault("status", f"/api/v1/devices/{dev.id}/checkin", count=1, code=401)])
    try:
        r = dev.agent("update")
        assert r.returncode != 0 and "check-in refused: HTTP 401" in r.stderr, r.stderr
    finally:
        srv.faults([])
    r = dev.agent("update")
    assert r.returncode == 0, r.stderr
    regs = [x for x in srv.requests() if x["path"] == "/api/v1/devices/register"][n_regs:]
    assert [x["status"] for x in regs] == [200], regs  # once, on its old token
    assert srv.admin_ok("GET", f"/api/v1/devices/{dev.id}")["reenrolled_ms"] > 0
    r = dev.agent("update")
    assert r.returncode == 0, r.stderr
