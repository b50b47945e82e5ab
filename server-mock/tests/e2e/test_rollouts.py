"""Rollouts and the event stream of ota-server over real HTTP: selection by
the documented hash, stage advance, auto-rollback with rollback orders,
lifecycle conflicts, max_concurrent, report timeouts, kill -9 + restart,
server-sent events, and two real ota-agent devices in a rollout.

Devices check in with plain HTTP requests (except the real-agent test).
Each test uses its own device group (and filters on it), so the tests of
one server do not see each other's devices."""

import json
import os
import threading
import time
import http.client

import pytest

from test_server_api import ADMIN, ENROLL, Server, otadev  # noqa: F401

M64 = (1 << 64) - 1


def bucket(rollout_id, device_id):
    """docs/protocol.md, Rollouts, Selection."""
    h = 0xcbf29ce484222325
    for b in rollout_id.encode() + b"\0" + device_id.encode():
        h ^= b
        h = (h * 0x100000001b3) & M64
    h ^= h >> 33
    h = (h * 0xff51afd7ed558ccd) & M64
    h ^= h >> 33
    h = (h * 0xc4ceb9fe1a85ec53) & M64
    h ^= h >> 33
    return h % 10000


@pytest.fixture(scope="module")
def rworld(tmp_path_factory):
    work = str(tmp_path_factory.mktemp("roll"))
    keys = otadev.Keys(work)
    v1 = otadev.make_package(work, "video-app", "1.0.0", "tar.gz")
    v2 = otadev.make_package(work, "video-app-v2", "2.0.0", "tar.gz")
    out = os.path.join(work, "out")
    os.makedirs(out)
    rel_v2 = otadev.publish(out, "v2", v2, "2.0.0", keys)
    rel_v1rb = otadev.publish(out, "v1rb", v1, "1.0.0", keys,
                              extra=("--rollback", "--rollback-from", "2.0.0",
                                     "--rollback-expires", "+3650d"))
    srv_dir = os.path.join(work, "server")
    os.makedirs(srv_dir)
    srv = Server(srv_dir, extra=["--public-key", keys.pub])
    for d, rid in ((rel_v2, "v2"), (rel_v1rb, "v1rb")):
        st, _, b = srv.admin("POST", "/api/v1/releases", {"dir": d, "id": rid, "publish": True})
        assert st == 201, b
    yield {"work": work, "keys": keys, "v1": v1, "v2": v2, "rel_v2": rel_v2,
           "rel_v1rb": rel_v1rb, "srv": srv}
    srv.stop()


def register_group(srv, group, n, prefix=None):
    """{device id: token} of n new devices in group."""
    prefix = prefix or group
    return {f"{prefix}-{i:04d}": srv.register(f"{prefix}-{i:04d}", group=group)
            for i in range(n)}


def checkin(srv, dev, token, app="1.0.0"):
    st, _, b = srv.call("POST", f"/api/v1/devices/{dev}/checkin",
                        {"state": "IDLE", "versions": {"app": app, "rootfs": ""}},
                        token=token)
    assert st == 200, b
    return b["update"]


def report(srv, dev, token, update_id, rollout_id, status, state="COMMITTED"):
    st, _, b = srv.call("POST", f"/api/v1/devices/{dev}/status",
                        {"update_id": update_id, "rollout_id": rollout_id, "state": state,
                         "status": status, "ts": int(time.time() * 1000)}, token=token)
    assert st == 200, b


def create(srv, body, expect=201):
    st, _, b = srv.admin("POST", "/api/v1/rollouts", body)
    assert st == expect, b
    return b


def act(srv, rid, action, expect=200):
    st, _, b = srv.admin("POST", f"/api/v1/rollouts/{rid}/{action}")
    assert st == expect, b
    return b


def get(srv, rid):
    st, _, b = srv.admin("GET", f"/api/v1/rollouts/{rid}")
    assert st == 200, b
    return b


def wait_for(fn, timeout=10.0, step=0.1):
    deadline = time.time() + timeout
    while True:
        v = fn()
        if v or time.time() > deadline:
            return v
        time.sleep(step)


def test_canary_selects_by_the_documented_hash_then_advances(rworld):
    srv = rworld["srv"]
    devs = register_group(srv, "g1", 200)
    r = create(srv, {"id": "c1", "release_id": "v2", "previous_release_id": "v1rb",
                     "strategy": "canary", "filters": {"group": "g1"}, "auto_rollback": True,
                     "stages": [{"percent": 10, "failure_threshold": 10}, {"percent": 100}]})
    assert r["status"]["state"] == "draft" and r["devices"] == 200
    # a draft offers nothing, and since a rollout exists there is no fallback offer
    assert checkin(srv, "g1-0000", devs["g1-0000"]) is None
    act(srv, "c1", "approve")
    assert act(srv, "c1", "start")["status"]["state"] == "running"
    expected = {d for d in devs if bucket("c1", d) < 1000}
    offered = {}
    for d, tok in devs.items():
        u = checkin(srv, d, tok)
        if u:
            offered[d] = u
    assert set(offered) == expected
    assert 8 <= len(offered) <= 35, len(offered)
    for d, u in offered.items():
        assert u["update_id"] == f"c1-{d}" and u["rollout_id"] == "c1"
        assert u["release_id"] == "v2" and u["url"].endswith("/api/v1/releases/v2/payload")
    st, _, rows = srv.admin("GET", "/api/v1/rollouts/c1/devices?state=offered&limit=1000")
    assert st == 200 and rows["total"] == len(expected)
    for d in offered:
        report(srv, d, devs[d], f"c1-{d}", "c1", "in_progress", state="INSTALLING")
        report(srv, d, devs[d], f"c1-{d}", "c1", "success")
    b = get(srv, "c1")
    assert b["status"]["stage"] == 1, b["status"]
    rest = [d for d in devs if d not in offered]
    for d in rest:
        u = checkin(srv, d, devs[d])
        assert u and u["update_id"] == f"c1-{d}", d
        report(srv, d, devs[d], f"c1-{d}", "c1", "success")
    b = get(srv, "c1")
    assert b["status"]["state"] == "completed", b["status"]
    assert b["metrics"]["succeeded"] == 200 and b["metrics"]["success_rate"] == 1
    st, _, m = srv.admin("GET", "/api/v1/rollouts/c1/metrics")
    assert st == 200 and m["by_state"]["success"] == 200
    # a finished device is offered nothing more
    assert checkin(srv, "g1-0001", devs["g1-0001"]) is None
    st, _, stats = srv.admin("GET", "/api/v1/stats")
    assert st == 200 and stats["devices"]["by_group"]["g1"] == 200
    assert stats["rollouts"]["by_state"]["completed"] >= 1


def test_failures_past_the_threshold_roll_back(rworld):
    srv = rworld["srv"]
    devs = register_group(srv, "g2", 100)
    create(srv, {"id": "c2", "release_id": "v2", "previous_release_id": "v1rb",
                 "strategy": "canary", "filters": {"group": "g2"}, "auto_rollback": True,
                 "stages": [{"percent": 30, "failure_threshold": 10}, {"percent": 100}]})
    act(srv, "c2", "approve")
    act(srv, "c2", "start")
    canary = sorted(d for d in devs if bucket("c2", d) < 3000)
    assert len(canary) >= 10
    for d in canary:
        assert checkin(srv, d, devs[d])["update_id"] == f"c2-{d}"
    # more than 10% of the canary fail
    nfail = len(canary) // 10 + 1
    failed, ok = canary[:nfail], canary[nfail:]
    report(srv, ok[0], devs[ok[0]], f"c2-{ok[0]}", "c2", "success")
    for d in failed:
        report(srv, d, devs[d], f"c2-{d}", "c2", "failure", state="FAILED")
    b = get(srv, "c2")
    assert b["status"]["state"] == "rolled_back", b["status"]
    # the devices that got the release are ordered back; failed ones are not
    for d in ok:
        u = checkin(srv, d, devs[d], app="2.0.0")
        assert u and u["update_id"] == f"c2-{d}-rollback" and u["release_id"] == "v1rb", (d, u)
    assert checkin(srv, failed[0], devs[failed[0]]) is None
    other = next(d for d in devs if d not in canary)
    assert checkin(srv, other, devs[other]) is None

    def rolled_back():
        st, _, rows = srv.admin("GET", "/api/v1/rollouts/c2/devices?state=rolled_back")
        return [x["device_id"] for x in rows["devices"]]
    # the rollback order's reports move the device to rolled_back
    report(srv, ok[1], devs[ok[1]], f"c2-{ok[1]}-rollback", "c2", "success")
    assert rolled_back() == [ok[1]]
    # so does a check-in at the rollback order's version (the agent calls that order "up to
    # date" and reports nothing): nothing more is offered
    assert checkin(srv, ok[2], devs[ok[2]], app="1.0.0") is None
    assert rolled_back() == sorted([ok[1], ok[2]])
    # but if it then reports having installed the release after all, it is ordered back again
    report(srv, ok[2], devs[ok[2]], f"c2-{ok[2]}", "c2", "success")
    u = checkin(srv, ok[2], devs[ok[2]], app="2.0.0")
    assert u and u["update_id"] == f"c2-{ok[2]}-rollback", u


def test_lifecycle_conflicts_and_bad_input_change_nothing(rworld):
    srv = rworld["srv"]
    register_group(srv, "g3", 3)
    create(srv, {"id": "c3", "release_id": "v2", "filters": {"group": "g3"}, "strategy": "immediate"})
    before = get(srv, "c3")
    assert act(srv, "c3", "start", expect=409)["detail"]
    act(srv, "c3", "cancel")
    after_cancel = get(srv, "c3")["status"]
    assert after_cancel["state"] == "cancelled"
    for action in ("start", "approve", "pause", "resume"):
        assert "cancelled" in act(srv, "c3", action, expect=409)["detail"]
    assert act(srv, "c3", "cancel")["status"] == after_cancel  # already there: 200, unchanged
    assert get(srv, "c3")["status"] == after_cancel
    assert before["status"]["state"] == "draft"
    # bad input
    create(srv, {"id": "c3x", "release_id": "nope", "strategy": "immediate"}, expect=400)
    create(srv, {"id": "c3y", "release_id": "v2", "strategy": "sideways"}, expect=400)
    create(srv, {"id": "c3z", "release_id": "v2", "bogus": 1, "strategy": "immediate"}, expect=400)
    create(srv, {"id": "c3", "release_id": "v2", "strategy": "immediate"}, expect=409)
    st, _, b = srv.call("POST", "/api/v1/rollouts", {"release_id": "v2"})
    assert st == 401
    st, _, b = srv.admin("GET", "/api/v1/rollouts/nope")
    assert st == 404 and b["detail"]
    st, _, b = srv.admin("POST", "/api/v1/rollouts/c3/explode")
    assert st == 404
    st, _, lst = srv.admin("GET", "/api/v1/rollouts")
    ids = [x["id"] for x in lst["rollouts"]]
    assert "c3" in ids and "c3x" not in ids and "c3y" not in ids


def test_release_in_use_cannot_be_deleted(rworld):
    srv = rworld["srv"]
    register_group(srv, "g3b", 2)
    create(srv, {"id": "c3b", "release_id": "v2", "filters": {"group": "g3b"}, "strategy": "immediate"})
    st, _, b = srv.admin("DELETE", "/api/v1/releases/v2")
    assert st == 409 and "rollout" in b["detail"]
    act(srv, "c3b", "cancel")


def test_max_concurrent_is_respected(rworld):
    srv = rworld["srv"]
    devs = register_group(srv, "g4", 30)
    create(srv, {"id": "c4", "release_id": "v2", "strategy": "immediate",
                 "filters": {"group": "g4"}, "max_concurrent": 5})
    act(srv, "c4", "approve")
    act(srv, "c4", "start")
    got = [d for d, t in devs.items() if checkin(srv, d, t)]
    assert len(got) == 5
    report(srv, got[0], devs[got[0]], f"c4-{got[0]}", "c4", "success")
    more = [d for d, t in devs.items() if d not in got and checkin(srv, d, t)]
    assert len(more) == 1
    # the offered ones are offered again (in flight), the cap holds
    assert checkin(srv, got[1], devs[got[1]])["update_id"] == f"c4-{got[1]}"
    assert get(srv, "c4")["metrics"]["in_flight"] == 5
    act(srv, "c4", "cancel")


def test_silent_devices_time_out(rworld):
    srv = rworld["srv"]
    devs = register_group(srv, "g5", 10)
    create(srv, {"id": "c5", "release_id": "v2", "strategy": "immediate",
                 "filters": {"group": "g5"}, "report_timeout_ms": 300,
                 "stages": [{"percent": 100, "failure_threshold": 50, "success_threshold": 50}]})
    act(srv, "c5", "approve")
    act(srv, "c5", "start")
    for d, t in devs.items():
        assert checkin(srv, d, t)
    first = sorted(devs)[0]
    report(srv, first, devs[first], f"c5-{first}", "c5", "success")

    def timed_out():
        st, _, rows = srv.admin("GET", "/api/v1/rollouts/c5/devices?state=timed_out")
        return rows["total"] == 9 and rows

    assert wait_for(timed_out, 10), get(srv, "c5")
    b = get(srv, "c5")
    assert b["status"]["state"] == "failed", b["status"]
    assert b["metrics"]["failed"] == 9


class Sse:
    """Reads a text/event-stream in a thread; .events is [(name, data)]."""

    def __init__(self, srv, path):
        self.events = []
        self.comments = 0
        self.conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
        self.conn.request("GET", path, headers={"Authorization": f"Bearer {ADMIN}"})
        self.resp = self.conn.getresponse()
        assert self.resp.status == 200
        assert self.resp.getheader("Content-Type").startswith("text/event-stream")
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        name, data = None, None
        try:
            while True:
                line = self.resp.readline()  # chunked: decoded by http.client
                if not line:
                    return
                line = line.decode().rstrip("\n")
                if line.startswith(":"):
                    self.comments += 1
                elif line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    data = json.loads(line[6:])
                elif line == "" and name:
                    self.events.append((name, data))
                    name, data = None, None
        except (OSError, ValueError, AttributeError):
            return  # closed under us

    def names(self):
        return [n for n, _ in self.events]

    def close(self):
        self.conn.close()


def test_event_stream(rworld):
    srv = rworld["srv"]
    all_ev = Sse(srv, "/api/v1/events")
    try:
        devs = register_group(srv, "g6", 4)
        create(srv, {"id": "c6", "release_id": "v2", "filters": {"group": "g6"}, "strategy": "immediate"})
        one = Sse(srv, "/api/v1/rollouts/c6/events")
        try:
            act(srv, "c6", "approve")
            act(srv, "c6", "start")
            for d, t in devs.items():
                assert checkin(srv, d, t)["update_id"] == f"c6-{d}"
                report(srv, d, t, f"c6-{d}", "c6", "success")
            assert wait_for(lambda: ("rollout_state", "completed") in
                            [(n, x.get("state")) for n, x in one.events], 10), one.events
            reps = [x for n, x in one.events if n == "report"]
            assert len(reps) == 4 and {x["status"] for x in reps} == {"success"}
            assert all(set(x) >= {"device", "update_id", "state", "status"} for x in reps)
            assert "checkin" in one.names() and "rollout_metrics" in one.names()
            assert wait_for(lambda: all_ev.names().count("device_registered") >= 4, 5)
            assert "report" in all_ev.names() and "rollout_state" in all_ev.names()
        finally:
            one.close()
    finally:
        all_ev.close()
    # the server still answers after the subscribers went away
    st, _, _ = srv.admin("GET", "/api/v1/rollouts/c6")
    assert st == 200


def test_kill9_mid_rollout_and_restart_continue(rworld, tmp_path):
    srv = Server(str(tmp_path), extra=["--public-key", rworld["keys"].pub])
    try:
        for d, rid in ((rworld["rel_v2"], "v2"), (rworld["rel_v1rb"], "v1rb")):
            st, _, b = srv.admin("POST", "/api/v1/releases",
                                 {"dir": d, "id": rid, "publish": True})
            assert st == 201, b
        devs = register_group(srv, "k", 40)
        create(srv, {"id": "k1", "release_id": "v2", "strategy": "canary",
                     "stages": [{"percent": 50}, {"percent": 100}]})
        act(srv, "k1", "approve")
        act(srv, "k1", "start")
        offered = [d for d, t in devs.items() if checkin(srv, d, t)]
        assert offered
        done = offered[: len(offered) // 2]
        for d in done:
            report(srv, d, devs[d], f"k1-{d}", "k1", "success")
        before = get(srv, "k1")
        srv.kill9()
        srv.start()
        after = get(srv, "k1")
        assert after["status"] == before["status"]
        assert after["metrics"]["by_state"] == before["metrics"]["by_state"]
        # check-ins continue: the in-flight devices are offered again, then finish
        for d in offered:
            if d not in done:
                assert checkin(srv, d, devs[d])["update_id"] == f"k1-{d}"
                report(srv, d, devs[d], f"k1-{d}", "k1", "success")
        assert get(srv, "k1")["status"]["stage"] == 1
        for d, t in devs.items():
            if d not in offered:
                assert checkin(srv, d, t)["update_id"] == f"k1-{d}"
                report(srv, d, t, f"k1-{d}", "k1", "success")
        assert get(srv, "k1")["status"]["state"] == "completed"
    finally:
        srv.stop()


def test_real_agents_in_an_immediate_rollout(rworld, tmp_path):
    srv = Server(str(tmp_path), extra=["--public-key", rworld["keys"].pub])
    agents = []
    try:
        st, _, b = srv.admin("POST", "/api/v1/releases",
                             {"dir": rworld["rel_v2"], "id": "v2", "publish": True})
        assert st == 201, b
        # a draft first: with a rollout in place there is no fallback offer
        create(srv, {"id": "a1", "release_id": "v2", "strategy": "immediate"})
        for i in range(2):
            dev = otadev.Device(str(tmp_path / f"agent{i}"), srv, rworld["keys"], rworld["v1"],
                                device_id=f"agent-{i}")
            agents.append(dev)
            r = dev.agent("update")  # registers, checks in: nothing to do yet
            assert r.returncode == 0, r.stderr
            assert dev.app_version()["version"] == "1.0.0"
        act(srv, "a1", "approve")
        b = act(srv, "a1", "start")
        assert b["devices"] == 2
        for dev in agents:
            r = dev.agent("update")
            assert r.returncode == 0, r.stderr
            assert dev.app_version()["version"] == "2.0.0"
        assert wait_for(lambda: get(srv, "a1")["status"]["state"] == "completed", 10), \
            get(srv, "a1")
        st, _, reps = srv.admin("GET", "/api/v1/reports?device=agent-0")
        assert reps["reports"][-1]["update_id"] == "a1-agent-0"
        assert reps["reports"][-1]["rollout_id"] == "a1"
    finally:
        for dev in agents:
            dev.stop()
        srv.stop()


def test_a_rollback_target_the_agents_refuse_is_400(rworld, tmp_path):
    """previous_release_id must be what ota-agent installs as a rollback: a
    signed rollback order (manifest "rollback": true) of the same product
    and kind, older than release_id (docs/protocol.md, "The definition")."""
    srv = rworld["srv"]
    keys, out = rworld["keys"], str(tmp_path)
    bound = ("--rollback", "--rollback-from", "2.0.0", "--rollback-expires", "+3650d")
    bad = {
        "v1plain": (otadev.publish(out, "v1plain", rworld["v1"], "1.0.0", keys),
                    "is not a rollback order"),
        "v3rb": (otadev.publish(out, "v3rb", rworld["v2"], "3.0.0", keys, extra=bound),
                 "is not older than release_id v2's 2.0.0"),
        "v2rb": (otadev.publish(out, "v2rb", rworld["v2"], "2.0.0", keys, extra=bound),
                 "is not older than release_id v2's 2.0.0"),
        "v1other": (otadev.publish(out, "v1other", rworld["v1"], "1.0.0", keys, extra=bound,
                                   name="other-app"),
                    "is a release of other-app, release_id v2 one of video-app"),
    }
    for rid, (d, _) in bad.items():
        st, _, b = srv.admin("POST", "/api/v1/releases", {"dir": d, "id": rid, "publish": False})
        assert st == 201, b
    for rid, (_, why) in bad.items():
        b = create(srv, {"id": f"rb-{rid}", "release_id": "v2", "previous_release_id": rid,
                         "strategy": "immediate"}, expect=400)
        assert b["detail"].startswith("field previous_release_id: ") and why in b["detail"], b
        assert srv.admin("GET", f"/api/v1/rollouts/rb-{rid}")[0] == 404
    # the rollback order of test_failures_past_the_threshold_roll_back is fine
    create(srv, {"id": "rb-ok", "release_id": "v2", "previous_release_id": "v1rb",
                 "strategy": "immediate", "filters": {"group": "rb-none"}})
    act(srv, "rb-ok", "cancel")


def test_the_server_orders_a_rollback_and_the_real_agent_carries_it_out(rworld, tmp_path):
    os.makedirs(tmp_path / "srv")
    srv = Server(str(tmp_path / "srv"), extra=["--public-key", rworld["keys"].pub])
    dev = stay = None

    def states():
        st, _, devs = srv.admin("GET", "/api/v1/rollouts/rb1/devices")
        assert st == 200, devs
        return {x["device_id"]: x["state"] for x in devs["devices"]}
    try:
        for d, rid in ((rworld["rel_v2"], "v2"), (rworld["rel_v1rb"], "v1rb")):
            st, _, b = srv.admin("POST", "/api/v1/releases", {"dir": d, "id": rid,
                                                               "publish": True})
            assert st == 201, b
        create(srv, {"id": "rb1", "release_id": "v2", "previous_release_id": "v1rb",
                     "strategy": "immediate"})
        dev = otadev.Device(str(tmp_path / "agent"), srv, rworld["keys"], rworld["v1"],
                            device_id="agent-rb")
        # a second device that is offered 2.0.0 but never installs it
        stay = otadev.Device(str(tmp_path / "stay"), srv, rworld["keys"], rworld["v1"],
                             device_id="agent-stay")
        for d in (dev, stay):
            r = d.agent("update")  # registers: in the rollout's table once started
            assert r.returncode == 0, r.stderr
        act(srv, "rb1", "approve")
        assert act(srv, "rb1", "start")["devices"] == 2
        assert stay.agent("check").returncode == 10  # offered, not installed
        r = dev.agent("update")
        assert r.returncode == 0, r.stderr
        assert dev.app_version()["version"] == "2.0.0"
        assert wait_for(lambda: states()["agent-rb"] == "success", 10), states()
        # the operator rolls back: the agent installs the signed rollback order
        act(srv, "rb1", "rollback")
        r = dev.agent("update")
        assert r.returncode == 0, r.stderr
        assert dev.app_version()["version"] == "1.0.0"
        assert dev.status()["app"]["version"] == "1.0.0"
        st, _, reps = srv.admin("GET", "/api/v1/reports?device=agent-rb")
        last = reps["reports"][-1]
        assert last["update_id"] == "rb1-agent-rb-rollback" and last["status"] == "success", last
        assert states() == {"agent-rb": "rolled_back", "agent-stay": "rollback_ordered"}
        # the device still on 1.0.0: its order is "up to date" to the agent (no download, no
        # report); its check-in, showing the rollback order's version, counts as rolled back
        r = stay.agent("update")
        assert r.returncode == 0, r.stderr
        assert stay.app_version()["version"] == "1.0.0"
        assert states() == {"agent-rb": "rolled_back", "agent-stay": "rolled_back"}
        # and both stay there: nothing more is offered
        r = dev.agent("update")
        assert r.returncode == 0, r.stderr
        assert dev.app_version()["version"] == "1.0.0"
    finally:
        for d in (dev, stay):
            if d:
                d.stop()
        srv.stop()


def test_rollout_commands(rworld, tmp_path):
    import subprocess
    from test_server_api import server_bin
    srv = rworld["srv"]
    register_group(srv, "g7", 3)
    common = ["--server", srv.url, "--admin-token", ADMIN]
    spec = tmp_path / "r.json"
    spec.write_text(json.dumps({"id": "cli1", "release_id": "v2", "strategy": "immediate",
                                "filters": {"group": "g7"}}))

    def ctl(*args):
        return subprocess.run([server_bin(), "rollout", *args] + common, capture_output=True,
                              text=True)

    r = ctl("create", str(spec))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["status"]["state"] == "draft"
    r = ctl("start", "cli1")
    assert r.returncode == 1 and "409" in r.stderr
    for a, state in (("approve", "approved"), ("start", "running"), ("pause", "paused"),
                     ("resume", "running"), ("cancel", "cancelled")):
        r = ctl(a, "cli1")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["status"]["state"] == state
    r = ctl("status", "cli1")
    assert r.returncode == 0 and json.loads(r.stdout)["metrics"]["devices"] == 3
    r = ctl("list")
    assert "cli1" in [x["id"] for x in json.loads(r.stdout)["rollouts"]]
    assert ctl("frobnicate", "cli1").returncode == 2
