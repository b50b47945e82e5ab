"""ota-server's virtual clock (serve --virtual-clock, docs/protocol.md
"Virtual clock (tests only)") over real HTTP: off by default; a scheduled
rollout starts only when the clock is advanced past start_at_ms; a report
timeout fires on the advance that reaches it; fault-plan delay, stall and
throttle hold their request until the clock gets there, while the server
(one worker thread here) goes on answering; shutdown ends a sleeping
request at once; "ota-server clock" drives it.
Nothing here waits on real time for the server's timers.

Needs OTA_BUILD_DIR like test_server_api.py (whose helpers it reuses)."""

import http.client
import json
import os
import socket
import subprocess
import threading
import time

import pytest

from test_server_api import ADMIN, Server, manifest_of, server_bin
import otadev  # noqa: E402  (test_server_api put it on sys.path)

T0 = 1_800_000_000_000  # the virtual clock's start (unix ms)


@pytest.fixture(scope="module")
def vw(tmp_path_factory):
    work = str(tmp_path_factory.mktemp("vclock"))
    keys = otadev.Keys(work)
    v2 = otadev.make_package(work, "video-app-v2", "2.0.0", "tar.gz")
    out = os.path.join(work, "out")
    os.makedirs(out)
    rel_v2 = otadev.publish(out, "v2", v2, "2.0.0", keys)
    img, data = otadev.make_image(work, "img", 1 << 20, seed=5)
    rel_img = otadev.publish(out, "img", img, "5.0.0", keys, kind="rootfs", fmt="raw",
                             device_types=("imgboard",))
    srv_dir = os.path.join(work, "server")
    os.makedirs(srv_dir)
    # One worker thread: a request waiting on the clock must not hold it.
    srv = Server(srv_dir, extra=["--public-key", keys.pub, "--virtual-clock", str(T0),
                                 "--threads", "1"])
    for d, rid in ((rel_v2, "v2"), (rel_img, "img")):
        st, _, b = srv.admin("POST", "/api/v1/releases", {"dir": d, "id": rid, "publish": True})
        assert st == 201, b
    m = manifest_of(rel_img)
    yield {"work": work, "srv": srv, "data": data,
           "gh_path": f"/acme/rootfs/releases/download/img/{m['payload']}"}
    srv.stop()


def clock(srv):
    st, _, b = srv.admin("GET", "/api/v1/admin/clock")
    assert st == 200, b
    return b


def advance(srv, expect=200, **body):
    st, _, b = srv.admin("POST", "/api/v1/admin/clock", body)
    assert st == expect, b
    return b


def register(srv, group, n):
    return {f"{group}-{i:04d}": srv.register(f"{group}-{i:04d}", group=group) for i in range(n)}


def checkin(srv, dev, token):
    st, _, b = srv.call("POST", f"/api/v1/devices/{dev}/checkin",
                        {"state": "IDLE", "versions": {"app": "1.0.0", "rootfs": ""}},
                        token=token)
    assert st == 200, b
    return b["update"]


def rollout(srv, body):
    st, _, b = srv.admin("POST", "/api/v1/rollouts", body)
    assert st == 201, b
    for action in ("approve", "start"):
        st, _, b = srv.admin("POST", f"/api/v1/rollouts/{body['id']}/{action}")
        assert st == 200, b
    return b


def rollout_status(srv, rid):
    st, _, b = srv.admin("GET", f"/api/v1/rollouts/{rid}")
    assert st == 200, b
    return b["status"]


def device_states(srv, rid):
    st, _, b = srv.admin("GET", f"/api/v1/rollouts/{rid}/devices?limit=1000")
    assert st == 200, b
    return {d["device_id"]: d for d in b["devices"]}


def put_plan(srv, path, fault, **match):
    plan = {"seed": 1, "rules": [{"id": "v1", "match": {"path": path, **match},
                                  "fault": fault, "count": 1}]}
    st, _, b = srv.admin("PUT", "/api/v1/faults", raw=json.dumps(plan).encode(),
                         headers={"Content-Type": "application/json"})
    assert st == 200, b


def until(fn, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(0.01)


# ---------------------------------------------------------------- off

def test_the_clock_is_off_by_default(tmp_path):
    r = subprocess.run([server_bin(), "--help"], capture_output=True, text=True)
    assert "--virtual-clock" in r.stdout and "clock advance" in r.stdout
    srv = Server(str(tmp_path))
    try:
        b = clock(srv)
        assert b["virtual"] is False and b["sleepers"] == 0
        assert abs(b["now_ms"] - time.time() * 1000) < 60000  # real time
        b = advance(srv, 409, advance_ms=1000)
        assert "virtual clock is off" in b["detail"]
        st, _, _ = srv.call("POST", "/api/v1/admin/clock", {"advance_ms": 1})
        assert st == 401  # admin only
    finally:
        srv.stop()


# ---------------------------------------------------------------- the API

def test_advances_are_checked_and_only_go_forward(vw):
    srv = vw["srv"]
    now = clock(srv)["now_ms"]
    assert now >= T0 and clock(srv)["virtual"] is True
    for bad in ({}, {"advance_ms": -1}, {"advance_ms": "5"}, {"advance_to_ms": 1.5},
                {"advance_ms": 1, "advance_to_ms": now + 1}, {"advance_by": 1}):
        st, _, b = srv.admin("POST", "/api/v1/admin/clock", bad)
        assert st == 400, (bad, b)
    b = advance(srv, 409, advance_to_ms=now - 1)
    assert "only moves forward" in b["detail"]
    assert clock(srv)["now_ms"] == now  # nothing changed
    b = advance(srv, advance_ms=250)
    assert b["now_ms"] == now + 250 and b["sleepers"] == 0 and "next_deadline_ms" in b
    b = advance(srv, advance_to_ms=now + 250)  # staying put is fine
    assert b["now_ms"] == now + 250
    st, _, b = srv.admin("DELETE", "/api/v1/admin/clock")
    assert st == 405


def test_ota_server_clock_commands(vw):
    srv = vw["srv"]
    env = dict(os.environ, OTA_SERVER=srv.url, OTA_ADMIN_TOKEN=ADMIN)
    now = clock(srv)["now_ms"]
    r = subprocess.run([server_bin(), "clock", "get"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["now_ms"] == now
    r = subprocess.run([server_bin(), "clock", "advance", "--by", "1000"], capture_output=True,
                       text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["now_ms"] == now + 1000
    r = subprocess.run([server_bin(), "clock", "advance", "--to", str(now + 5000)],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0 and json.loads(r.stdout)["now_ms"] == now + 5000, r.stderr
    r = subprocess.run([server_bin(), "clock", "advance", "--to", str(now)], capture_output=True,
                       text=True, env=env)
    assert r.returncode == 1 and "only moves forward" in r.stderr
    r = subprocess.run([server_bin(), "clock", "advance"], capture_output=True, text=True,
                       env=env)
    assert r.returncode == 2


# ---------------------------------------------------------------- rollouts

def test_a_scheduled_rollout_starts_only_when_the_clock_gets_there(vw):
    srv = vw["srv"]
    devs = register(srv, "sch", 3)
    now = clock(srv)["now_ms"]
    start = now + 6 * 3600 * 1000
    b = rollout(srv, {"id": "vs1", "release_id": "v2", "strategy": "scheduled",
                      "start_at_ms": start, "filters": {"group": "sch"}})
    assert b["status"]["state"] == "scheduled"
    assert clock(srv)["next_deadline_ms"] == start
    dev, tok = next(iter(devs.items()))
    assert checkin(srv, dev, tok) is None
    b = advance(srv, advance_to_ms=start - 1)
    assert b["next_deadline_ms"] == start
    assert rollout_status(srv, "vs1")["state"] == "scheduled"
    assert checkin(srv, dev, tok) is None
    b = advance(srv, advance_to_ms=start)
    st = rollout_status(srv, "vs1")  # started by the advance, before its answer
    assert st["state"] == "running" and st["started_ms"] == start
    assert b["next_deadline_ms"] is None or b["next_deadline_ms"] > start
    u = checkin(srv, dev, tok)
    assert u and u["update_id"] == f"vs1-{dev}"
    assert device_states(srv, "vs1")[dev]["offered_ms"] == start  # virtual time


def test_a_report_timeout_fires_on_the_advance_that_reaches_it(vw):
    srv = vw["srv"]
    devs = register(srv, "rto", 2)
    (d0, t0), (d1, t1) = devs.items()
    rollout(srv, {"id": "vt1", "release_id": "v2", "strategy": "immediate",
                  "report_timeout_ms": 600000, "filters": {"group": "rto"},
                  "stages": [{"percent": 100, "failure_threshold": 100}]})
    n0 = clock(srv)["now_ms"]
    assert checkin(srv, d0, t0)
    advance(srv, advance_ms=60000)
    assert checkin(srv, d1, t1)
    assert clock(srv)["next_deadline_ms"] == n0 + 600000
    b = advance(srv, advance_to_ms=n0 + 600000 - 1)
    assert device_states(srv, "vt1")[d0]["state"] == "offered"
    b = advance(srv, advance_to_ms=n0 + 600000)
    rows = device_states(srv, "vt1")
    assert rows[d0]["state"] == "timed_out" and rows[d0]["finished_ms"] == n0 + 600000
    assert rows[d1]["state"] == "offered"
    assert b["next_deadline_ms"] == n0 + 660000  # d1's, next
    advance(srv, advance_to_ms=b["next_deadline_ms"])
    assert device_states(srv, "vt1")[d1]["state"] == "timed_out"


# ---------------------------------------------------------------- faults

def test_a_fault_delay_answers_only_after_the_advance(vw):
    srv = vw["srv"]
    devs = register(srv, "dly", 1)
    dev, tok = next(iter(devs.items()))
    put_plan(srv, f"/api/v1/devices/{dev}/checkin", {"kind": "delay", "ms": 600000})
    try:
        arrival = clock(srv)["now_ms"]
        got = {}
        th = threading.Thread(target=lambda: got.update(r=srv.call(
            "POST", f"/api/v1/devices/{dev}/checkin",
            {"state": "IDLE", "versions": {"app": "1.0.0", "rootfs": ""}}, token=tok)))
        th.start()
        assert until(lambda: clock(srv)["sleepers"] == 1)
        b = clock(srv)
        assert b["next_deadline_ms"] == arrival + 600000
        th.join(0.5)
        assert th.is_alive()  # real time does not end it; the server still answers
        b = advance(srv, advance_to_ms=arrival + 599999)
        assert b["sleepers"] == 1 and b["woken"] == 0
        th.join(0.3)
        assert th.is_alive()
        b = advance(srv, advance_to_ms=arrival + 600000)
        assert b["sleepers"] == 0 and b["woken"] == 1
        th.join(10)
        assert not th.is_alive() and got["r"][0] == 200, got
        st, _, log = srv.admin("GET", "/api/v1/faults/applied")
        assert log["applied"][-1]["kind"] == "delay" and log["applied"][-1]["ts"] == arrival
    finally:
        srv.admin("DELETE", "/api/v1/faults")


def test_a_stall_holds_the_body_until_the_advance(vw):
    srv = vw["srv"]
    p, data = vw["gh_path"], vw["data"]
    put_plan(srv, p, {"kind": "stall", "after_bytes": 1000, "ms": 600000})
    try:
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
        s.sendall(f"GET {p} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        buf = b""
        while b"\r\n\r\n" not in buf or len(buf.split(b"\r\n\r\n", 1)[1]) < 1000:
            buf += s.recv(65536)
        assert buf.split(b"\r\n\r\n", 1)[1] == data[:1000]
        assert until(lambda: clock(srv)["sleepers"] == 1)
        s.settimeout(0.5)
        with pytest.raises(socket.timeout):
            s.recv(1)  # silence on real time
        advance(srv, advance_ms=600000)
        s.settimeout(10)
        assert s.recv(1) == b""  # then the close
        s.close()
    finally:
        srv.admin("DELETE", "/api/v1/faults")


def test_a_throttle_paces_on_virtual_time(vw):
    srv = vw["srv"]
    p, data = vw["gh_path"], vw["data"]
    put_plan(srv, p, {"kind": "throttle", "bytes_per_s": 100000})
    try:
        t0 = clock(srv)["now_ms"]
        got = {}
        th = threading.Thread(target=lambda: got.update(r=srv.call(
            "GET", p, headers={"Range": "bytes=0-499999"})))
        th.start()
        # A runner's loop: whenever the server holds the request, jump to
        # its next deadline.
        steps = 0
        while th.is_alive() and steps < 1000:
            b = clock(srv)
            if b["sleepers"]:
                advance(srv, advance_to_ms=b["next_deadline_ms"])
                steps += 1
            else:
                th.join(0.005)
        th.join(10)
        st, _, body = got["r"]
        assert st == 206 and body == data[:500000]
        took = clock(srv)["now_ms"] - t0
        assert 4900 <= took <= 5200, took  # 500000 bytes at 100000 B/s
        assert steps >= 40
    finally:
        srv.admin("DELETE", "/api/v1/faults")


def test_shutdown_ends_a_request_sleeping_on_the_clock(tmp_path):
    srv = Server(str(tmp_path), extra=["--virtual-clock", str(T0)])
    try:
        put_plan(srv, "/repos/*", {"kind": "delay", "ms": 600000})
        got = {}

        def call():
            try:
                got["r"] = srv.call("GET", "/repos/acme/x/releases/latest")
            except (http.client.HTTPException, OSError) as e:
                got["e"] = e

        th = threading.Thread(target=call)
        th.start()
        assert until(lambda: clock(srv)["sleepers"] == 1)
        t0 = time.monotonic()
        srv.proc.terminate()
        assert srv.proc.wait(10) == 0
        assert time.monotonic() - t0 < 5
        th.join(10)
        assert not th.is_alive() and "e" in got, got  # closed without an answer
    finally:
        srv.stop()
