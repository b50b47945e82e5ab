"""ota-server fault plans over real HTTP: a YAML plan at start (--faults),
JSON/YAML plans through the admin API, every fault kind seen by a real
client (http.client, a raw socket, curl), deterministic nth / every / count
/ probability, the log of applied faults matched to X-Request-Id, and the
real ota-agent downloading through a truncate fault (it resumes) and a
corrupt fault (it refuses the payload).

Needs OTA_BUILD_DIR like test_server_api.py (whose helpers it reuses)."""

import http.client
import json
import os
import socket
import subprocess
import time

import pytest

from test_server_api import ADMIN, Server, manifest_of, server_bin, sha256_file
import otadev  # noqa: E402  (test_server_api put it on sys.path)


@pytest.fixture(scope="module")
def fw(tmp_path_factory):
    work = str(tmp_path_factory.mktemp("flt"))
    keys = otadev.Keys(work)
    v1 = otadev.make_package(work, "video-app", "1.0.0", "tar.gz")
    v2 = otadev.make_package(work, "video-app-v2", "2.0.0", "deb")
    out = os.path.join(work, "out")
    os.makedirs(out)
    rel_v2 = otadev.publish(out, "v2", v2, "2.0.0", keys)
    img, data = otadev.make_image(work, "img", 1 << 20, seed=11)
    rel_img = otadev.publish(out, "img", img, "5.0.0", keys, kind="rootfs", fmt="raw",
                             device_types=("imgboard",))
    srv_dir = os.path.join(work, "server")
    os.makedirs(srv_dir)
    plan = os.path.join(work, "start.yaml")
    with open(plan, "w") as f:
        f.write("seed: 3\n"
                "rules:\n"
                "  - id: busy-checkin\n"
                "    match: {path: /api/v1/devices/*/checkin, nth: 1}\n"
                "    fault: {kind: status, code: 503, retry_after: 7}\n")
    srv = Server(srv_dir, extra=["--public-key", keys.pub, "--faults", plan])
    st, _, rel = srv.admin("POST", "/api/v1/releases", {"dir": rel_v2, "publish": True})
    assert st == 201, rel
    st, _, ri = srv.admin("POST", "/api/v1/releases", {"dir": rel_img, "publish": True})
    assert st == 201, ri
    m = manifest_of(rel_img)
    yield {"work": work, "keys": keys, "v1": v1, "srv": srv, "v2_id": rel["id"],
           "img": img, "data": data, "sha": m["sha256"],
           "gh_path": f"/acme/rootfs/releases/download/{ri['id']}/{m['payload']}",
           "fleet_path": f"/api/v1/releases/{ri['id']}/payload", "img_id": ri["id"]}
    srv.stop()


def put_plan(srv, plan, ctype="application/json"):
    raw = plan if isinstance(plan, (bytes, str)) else json.dumps(plan)
    if isinstance(raw, str):
        raw = raw.encode()
    st, _, b = srv.admin("PUT", "/api/v1/faults", raw=raw, headers={"Content-Type": ctype})
    return st, b


def one_rule(path, fault, count=None, **match):
    rule = {"id": "r1", "match": {"path": path, **match}, "fault": fault}
    if count is not None:
        rule["count"] = count
    return {"seed": 1, "rules": [rule]}


def applied(srv):
    st, _, b = srv.admin("GET", "/api/v1/faults/applied")
    assert st == 200, b
    return b["applied"]


def raw_get(srv, path, headers=None, timeout=30):
    """(status line, headers dict, body bytes, closed_early) over a raw
    socket: reads until the server closes."""
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=timeout)
    h = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{h}\r\n".encode())
    buf = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    except ConnectionResetError:
        pass
    s.close()
    if b"\r\n\r\n" not in buf:
        return None, {}, buf
    head, body = buf.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    hdrs = {k.lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:])}
    return int(lines[0].split()[1]), hdrs, body


@pytest.fixture
def clean(fw):
    srv = fw["srv"]
    yield srv
    st, _, _ = srv.admin("DELETE", "/api/v1/faults")
    assert st == 200


# ---------------------------------------------------------------- plans

def test_bad_plan_at_start_exits_2_with_the_reason(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - id: x\n    fault: {kind: explode}\n")
    r = subprocess.run([server_bin(), "serve", "--port", "0", "--db", str(tmp_path / "db"),
                        "--data-dir", str(tmp_path / "d"), "--admin-token", "a",
                        "--faults", str(bad)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert "explode" in r.stderr and "--faults" in r.stderr
    r = subprocess.run([server_bin(), "serve", "--port", "0", "--faults",
                        str(tmp_path / "missing.json")], capture_output=True, text=True)
    assert r.returncode == 2


def test_the_example_plans_load_at_start(tmp_path):
    exdir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "faults",
                         "examples")
    names = sorted(os.listdir(exdir)) if os.path.isdir(exdir) else []
    if not names:
        pytest.skip("no example plans")
    for name in names:
        d = tmp_path / name
        d.mkdir()
        srv = Server(str(d), extra=["--faults", os.path.join(exdir, name)])
        try:
            st, _, plan = srv.admin("GET", "/api/v1/faults")
            assert st == 200 and isinstance(plan["rules"], list), name
        finally:
            srv.stop()


def test_yaml_plan_at_start_status_on_checkin_and_the_log(fw):
    srv = fw["srv"]
    tok = srv.register("chk-1")
    st, h, b = srv.call("POST", "/api/v1/devices/chk-1/checkin", {}, token=tok)
    assert st == 503 and h["retry-after"] == "7"
    assert h["content-type"].startswith("application/json")
    assert "busy-checkin" in b["detail"]
    rid = h["x-request-id"]
    st, _, b = srv.call("POST", "/api/v1/devices/chk-1/checkin", {}, token=tok)
    assert st == 200, b
    # the admin API: which rule hit which request
    log = [e for e in applied(srv) if e["rule"] == "busy-checkin"]
    assert len(log) == 1
    e = log[0]
    assert e["x_request_id"] == rid and rid.endswith(f"-{e['request_id']}")
    assert e["kind"] == "status" and e["code"] == 503 and e["device"] == "chk-1"
    assert e["path"] == "/api/v1/devices/chk-1/checkin" and e["method"] == "POST"
    # the server's log (--log file): one JSON line per applied fault
    with open(os.path.join(srv.workdir, "access.log")) as f:
        lines = [json.loads(x) for x in f if '"fault":true' in x]
    assert any(x["x_request_id"] == rid and x["rule"] == "busy-checkin" for x in lines)
    st, _, plan = srv.admin("GET", "/api/v1/faults")
    assert plan["seed"] == 3 and plan["rules"][0]["applied"] == 1
    assert plan["rules"][0]["matched"] == 2


def test_put_plans_bad_plan_keeps_the_live_one(fw, clean):
    srv = clean
    st, b = put_plan(srv, one_rule("/nowhere-*", {"kind": "status", "code": 500}))
    assert st == 200 and b["rules"][0]["id"] == "r1"
    st, b = put_plan(srv, {"rules": [{"id": "x", "fault": {"kind": "truncate", "ms": 3}}]})
    assert st == 400 and "ms" in b["detail"]
    st, b = put_plan(srv, b"rules: [ {id: : }", ctype="application/yaml")
    assert st == 400 and b["detail"]
    st, _, live = srv.admin("GET", "/api/v1/faults")
    assert [r["id"] for r in live["rules"]] == ["r1"]
    st, _, b = srv.call("GET", "/nowhere-1")
    assert st == 500 and "r1" in b["detail"]
    # YAML by Content-Type and by sniffing
    yaml_plan = "seed: 9\nrules:\n  - id: y1\n    match: {path: /nowhere-*}\n" \
                "    fault: {kind: status, code: 418}\n"
    st, b = put_plan(srv, yaml_plan, ctype="application/yaml")
    assert st == 200 and b["seed"] == 9 and b["rules"][0]["id"] == "y1"
    st, b = put_plan(srv, yaml_plan.replace("y1", "y2"), ctype="application/octet-stream")
    assert st == 200 and b["rules"][0]["id"] == "y2"
    st, _, b = srv.call("GET", "/nowhere-1")
    assert st == 418
    # admin endpoints are never faulted, even by a rule matching everything
    st, b = put_plan(srv, one_rule("*", {"kind": "status", "code": 500}))
    assert st == 200
    st, _, b = srv.admin("GET", "/api/v1/releases")
    assert st == 200
    st, _, b = srv.call("GET", "/repos/acme/x/releases")
    assert st == 500
    st, _, b = srv.admin("DELETE", "/api/v1/faults")
    assert st == 200 and b["rules"] == []
    st, _, b = srv.call("GET", "/repos/acme/x/releases")
    assert st == 200
    # the log can be cleared
    st, _, b = srv.admin("DELETE", "/api/v1/faults/applied")
    assert st == 200 and applied(srv) == []
    st, _, b = srv.admin("GET", "/api/v1/faults/applied?limit=0")
    assert st == 400
    st, _, b = srv.admin("GET", "/api/v1/faults?bogus=1")
    assert st == 400 and "bogus" in b["detail"]
    # paging of the applied list
    for i in range(3):
        srv.call("GET", "/repos/acme/x/releases")
    st, b = put_plan(srv, one_rule("/repos/*", {"kind": "delay", "ms": 0}))
    for i in range(3):
        srv.call("GET", "/repos/acme/x/releases")
    st, _, b = srv.admin("GET", "/api/v1/faults/applied?limit=2&offset=1")
    assert st == 200 and b["total"] == 3 and b["kept"] == 3
    assert [e["match"] for e in b["applied"]] == [2, 3]
    st, _, _ = srv.admin("DELETE", "/api/v1/faults/applied")


def test_device_filter_sees_the_registering_device_and_the_token(fw, clean):
    srv = clean
    plan = {"rules": [
        {"id": "reg", "match": {"path": "/api/v1/devices/register", "device": "reg-b"},
         "fault": {"kind": "status", "code": 503}},
        {"id": "dl", "match": {"path": "/api/v1/releases/*", "device": "reg-a"},
         "fault": {"kind": "status", "code": 500}}]}
    st, b = put_plan(srv, plan)
    assert st == 200, b
    tok = srv.register("reg-a", device_type="imgboard")
    st, _, b = srv.call("POST", "/api/v1/devices/register",
                        {"device_id": "reg-b", "device_type": "imgboard"}, token="enroll-me")
    assert st == 503 and "reg" in b["detail"]
    st, _, _ = srv.call("GET", fw["fleet_path"], token=tok, headers={"Range": "bytes=0-9"})
    assert st == 500
    st, _, _ = srv.call("GET", fw["fleet_path"], token=ADMIN, headers={"Range": "bytes=0-9"})
    assert st == 206
    log = applied(srv)
    assert [(e["rule"], e["device"]) for e in log[-2:]] == [("reg", "reg-b"), ("dl", "reg-a")]


def test_applied_faults_per_device_are_kept_in_the_database(tmp_path):
    """GET /api/v1/faults/devices[/ID]: which rules applied to which device
    and how often, from the database: a new plan, a cleared log and a
    restart keep it; a rule that matched no request is absent."""
    srv = Server(str(tmp_path))
    try:
        tok_a = srv.register("ap-a")
        tok_b = srv.register("ap-b")
        plan = {"rules": [
            {"id": "busy-a", "match": {"path": "/api/v1/devices/*/checkin", "device": "ap-a"},
             "fault": {"kind": "status", "code": 503}, "count": 2},
            {"id": "never", "match": {"path": "/api/v1/devices/*/checkin", "device": "ap-zz"},
             "fault": {"kind": "status", "code": 500}},
            {"id": "slow-b", "match": {"path": "/api/v1/devices/*/checkin", "device": "ap-b"},
             "fault": {"kind": "delay", "ms": 0}, "count": 1}]}
        st, b = put_plan(srv, plan)
        assert st == 200, b
        st, _, b = srv.admin("GET", "/api/v1/faults/devices/ap-a")
        assert st == 200 and b == {"device": "ap-a", "rules": []}
        for _ in range(3):
            srv.call("POST", "/api/v1/devices/ap-a/checkin", {}, token=tok_a)
        srv.call("POST", "/api/v1/devices/ap-b/checkin", {}, token=tok_b)
        st, _, a = srv.admin("GET", "/api/v1/faults/devices/ap-a")
        assert st == 200 and a["device"] == "ap-a"
        assert [(r["rule"], r["kind"], r["applied"]) for r in a["rules"]] == \
            [("busy-a", "status", 2)]
        assert 0 < a["rules"][0]["first_ms"] <= a["rules"][0]["last_ms"]
        # a new plan and a cleared in-memory log forget nothing
        st, b = put_plan(srv, {"rules": []})
        st, _, _ = srv.admin("DELETE", "/api/v1/faults/applied")
        srv.stop()
        srv.start()
        st, _, every = srv.admin("GET", "/api/v1/faults/devices")
        assert st == 200
        got = {d["device"]: {r["rule"]: r["applied"] for r in d["rules"]}
               for d in every["devices"]}
        assert got == {"ap-a": {"busy-a": 2}, "ap-b": {"slow-b": 1}}
        st, _, b = srv.admin("GET", "/api/v1/faults/devices/ap-zz")
        assert st == 200 and b["rules"] == []
        st, _, b = srv.admin("GET", "/api/v1/faults/devices?limit=1")
        assert st == 400
        st, _, b = srv.admin("PUT", "/api/v1/faults/devices/ap-a", {})
        assert st == 405
        st, _, b = srv.admin("DELETE", "/api/v1/faults/devices")
        assert st == 200
        st, _, every = srv.admin("GET", "/api/v1/faults/devices")
        assert every["devices"] == []
        # device calls cannot read it
        st, _, _ = srv.call("GET", "/api/v1/faults/devices/ap-a", token=tok_a)
        assert st in (401, 403)
    finally:
        srv.stop()


# ---------------------------------------------------------------- each kind

def test_status_429_with_retry_after_and_delay(fw, clean):
    srv = clean
    p = fw["gh_path"]
    put_plan(srv, one_rule(p, {"kind": "status", "code": 429, "retry_after": 3}, count=1))
    st, h, b = srv.call("GET", p)
    assert st == 429 and h["retry-after"] == "3" and "r1" in b["detail"]
    st, h, b = srv.call("GET", p)
    assert st == 200 and b == fw["data"]
    put_plan(srv, one_rule(p, {"kind": "delay", "ms": 400}, count=1, method="HEAD"))
    t0 = time.monotonic()
    st, h, b = srv.call("HEAD", p)
    assert st == 200 and time.monotonic() - t0 >= 0.38
    e = applied(srv)[-1]
    assert e["kind"] == "delay" and e["x_request_id"] == h["x-request-id"]
    assert e["release"] == fw["img_id"]


def test_reset_closes_without_an_answer(fw, clean):
    srv = clean
    put_plan(srv, one_rule("/repos/*", {"kind": "reset"}, count=1))
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        srv.call("GET", "/repos/acme/x/releases/latest")
    st, _, _ = srv.call("GET", "/repos/acme/x/releases/latest")
    assert st == 200
    assert applied(srv)[-1]["kind"] == "reset"


def test_truncate_then_curl_resume_gives_the_exact_bytes(fw, clean, tmp_path):
    srv = clean
    p = fw["gh_path"]
    put_plan(srv, one_rule(p, {"kind": "truncate", "after_bytes": 300000}, count=1))
    out = tmp_path / "img"
    r = subprocess.run(["curl", "-sS", "-o", str(out), srv.url + p], capture_output=True)
    assert r.returncode != 0  # 18: partial file
    assert out.stat().st_size == 300000
    assert out.read_bytes() == fw["data"][:300000]
    r = subprocess.run(["curl", "-sSf", "-C", "-", "-o", str(out), srv.url + p],
                       capture_output=True)
    assert r.returncode == 0, r.stderr
    assert sha256_file(out) == fw["sha"]


def test_stall_sends_after_bytes_then_nothing_then_closes(fw, clean):
    srv = clean
    p = fw["gh_path"]
    put_plan(srv, one_rule(p, {"kind": "stall", "after_bytes": 1000, "ms": 1200}, count=1))
    t0 = time.monotonic()
    st, h, body = raw_get(srv, p)
    took = time.monotonic() - t0
    assert st == 200 and int(h["content-length"]) == len(fw["data"])
    assert body == fw["data"][:1000] and took >= 1.1


def test_corrupt_flips_the_same_absolute_bytes_on_resume(fw, clean):
    srv = clean
    p, data = fw["gh_path"], fw["data"]
    put_plan(srv, one_rule(p, {"kind": "corrupt", "offset": 100000, "length": 10}))
    want = bytearray(data)
    for i in range(100000, 100010):
        want[i] ^= 0xFF
    st, h, body = srv.call("GET", p)
    assert st == 200 and body == bytes(want) and body != data
    st, h, body = srv.call("GET", p, headers={"Range": "bytes=100005-100099"})
    assert st == 206 and body == bytes(want[100005:100100])
    st, h, body = srv.call("GET", p, headers={"Range": "bytes=0-99"})
    assert st == 206 and body == data[:100]
    assert [e["kind"] for e in applied(srv)[-3:]] == ["corrupt"] * 3


def test_wrong_length_declares_more_or_less(fw, clean):
    srv = clean
    p, data = fw["gh_path"], fw["data"]
    put_plan(srv, one_rule(p, {"kind": "wrong_length", "delta": 100}, count=1))
    st, h, body = raw_get(srv, p)
    assert st == 200 and int(h["content-length"]) == len(data) + 100 and body == data
    put_plan(srv, one_rule(p, {"kind": "wrong_length", "delta": -100}, count=1))
    st, h, body = raw_get(srv, p)
    assert st == 200 and int(h["content-length"]) == len(data) - 100
    assert body == data[:-100]


def test_ignore_range_answers_200_with_the_whole_body(fw, clean):
    srv = clean
    p, data = fw["gh_path"], fw["data"]
    put_plan(srv, one_rule(p, {"kind": "ignore_range"}, count=1))
    st, h, body = srv.call("GET", p, headers={"Range": "bytes=0-9"})
    assert st == 200 and body == data and "content-range" not in h
    st, h, body = srv.call("GET", p, headers={"Range": "bytes=0-9"})
    assert st == 206 and body == data[:10]


def test_throttle_paces_the_body(fw, clean):
    srv = clean
    p, data = fw["gh_path"], fw["data"]
    put_plan(srv, one_rule(p, {"kind": "throttle", "bytes_per_s": 400000}, count=1))
    t0 = time.monotonic()
    st, h, body = srv.call("GET", p, headers={"Range": "bytes=0-199999"})
    took = time.monotonic() - t0
    assert st == 206 and body == data[:200000] and took >= 0.45
    t0 = time.monotonic()
    st, h, body = srv.call("GET", p, headers={"Range": "bytes=0-199999"})
    assert st == 206 and time.monotonic() - t0 < 0.45


# ---------------------------------------------------------------- determinism

def faulted_numbers(srv, plan, n=40):
    st, b = put_plan(srv, plan)
    assert st == 200, b
    hit = []
    for i in range(1, n + 1):
        st, _, _ = srv.call("GET", "/probe")
        if st == 500:
            hit.append(i)
        else:
            assert st == 404
    return hit


def test_nth_every_count_probability_are_deterministic(fw, clean):
    srv = clean
    fault = {"kind": "status", "code": 500}
    assert faulted_numbers(srv, one_rule("/probe", fault, nth=3), 10) == [3]
    assert faulted_numbers(srv, one_rule("/probe", fault, after=4, every=2), 10) == [6, 8, 10]
    assert faulted_numbers(srv, one_rule("/probe", fault, count=2), 10) == [1, 2]
    plan = one_rule("/probe", fault, probability=0.5)
    plan["seed"] = 1234
    a = faulted_numbers(srv, plan)
    b = faulted_numbers(srv, plan)
    assert a == b and 5 < len(a) < 35
    plan["seed"] = 4321
    assert faulted_numbers(srv, plan) != a
    # the log names the rule and the request of every application
    log = applied(srv)[-len(a) - 1:]
    assert all(e["rule"] == "r1" and e["path"] == "/probe" for e in log)


# ---------------------------------------------------------------- the real agent

def test_real_agent_resumes_through_a_truncate_fault(fw, clean, tmp_path):
    srv = clean
    put_plan(srv, one_rule("/api/v1/releases/*/payload",
                           {"kind": "truncate", "after_bytes": 4096}, count=1, method="GET"))
    dev = otadev.Device(str(tmp_path / "agent-trunc"), srv, fw["keys"], fw["v1"],
                        device_id="agent-trunc-1")
    try:
        r = dev.agent("update")
        assert r.returncode == 0, r.stderr
        assert dev.current() == "b" and dev.app_version()["version"] == "2.0.0"
        log = [e for e in applied(srv) if e["rule"] == "r1" and e["device"] == "agent-trunc-1"]
        assert len(log) == 1 and log[0]["kind"] == "truncate"
        assert log[0]["release"] == fw["v2_id"]
        st, _, reps = srv.admin("GET", "/api/v1/reports?device=agent-trunc-1")
        assert reps["reports"][-1]["status"] == "success", reps
    finally:
        dev.stop()


def test_real_agent_refuses_a_corrupt_payload(fw, clean, tmp_path):
    srv = clean
    put_plan(srv, one_rule("/api/v1/releases/*/payload",
                           {"kind": "corrupt", "offset": 10, "length": 1}))  # no count: every one
    dev = otadev.Device(str(tmp_path / "agent-corrupt"), srv, fw["keys"], fw["v1"],
                        device_id="agent-corrupt-1")
    try:
        r = dev.agent("update")
        assert r.returncode != 0
        assert dev.current() == "a" and dev.app_version()["version"] == "1.0.0"
        st, _, reps = srv.admin("GET", "/api/v1/reports?device=agent-corrupt-1")
        assert reps["reports"] and reps["reports"][-1]["status"] == "failure", reps
        assert any(e["kind"] == "corrupt" and e["device"] == "agent-corrupt-1"
                   for e in applied(srv))
    finally:
        dev.stop()
