"""ota-server over real HTTP: the GitHub face, the fleet API (auth and
isolation between devices), the admin API, every bad input, Range semantics
checked with curl and wget, kill -9 durability under load, and the real
ota-agent updating v1 -> v2 against it.

Needs OTA_BUILD_DIR with server-mock/ota-server, agent/ota-agent,
agent/pack/ota-pack and the video-app builds."""

import hashlib
import http.client
import json
import os
import random
import subprocess
import sys
import threading
import time
import urllib.parse

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("OTA_SOURCE_DIR", os.path.abspath(os.path.join(HERE, "..", "..", "..")))
sys.path.insert(0, os.path.join(SRC, "agent", "tests", "e2e"))
import otadev  # noqa: E402

ADMIN = otadev.ADMIN
ENROLL = otadev.ENROLL


def server_bin():
    return otadev.server_bin()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


class Server(otadev.Server):
    """otadev.Server (the one helper that starts ota-server) without a
    release root, on the binary server_bin() names (test_ddi.py points it
    at a mutant)."""

    def __init__(self, workdir, extra=(), tls=None, **kw):
        super().__init__(None, workdir, extra=extra, tls=tls, **kw)

    def binary(self):
        return server_bin()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    work = str(tmp_path_factory.mktemp("srv"))
    keys = otadev.Keys(work)
    v1 = otadev.make_package(work, "video-app", "1.0.0", "tar.gz")
    v2 = otadev.make_package(work, "video-app-v2", "2.0.0", "deb")
    out = os.path.join(work, "out")
    os.makedirs(out)
    rel_v2 = otadev.publish(out, "v2", v2, "2.0.0", keys)
    # A bigger payload for the Range tests: 3 MiB of random bytes as rootfs.
    img, _ = otadev.make_image(work, "big", 3 << 20, seed=7)
    rel_big = otadev.publish(out, "big", img, "5.0.0", keys, kind="rootfs", fmt="raw",
                             device_types=("bigboard",))
    srv_dir = os.path.join(work, "server")
    os.makedirs(srv_dir)
    srv = Server(srv_dir, extra=["--public-key", keys.pub])
    st, _, rel = srv.admin("POST", "/api/v1/releases", {"dir": rel_v2, "publish": True})
    assert st == 201, rel
    st, _, big = srv.admin("POST", "/api/v1/releases", {"dir": rel_big, "publish": True})
    assert st == 201, big
    yield {"work": work, "keys": keys, "v1": v1, "v2": v2, "rel_v2": rel_v2, "rel_big": rel_big,
           "srv": srv, "v2_id": rel["id"], "big_id": big["id"], "big_img": img}
    srv.stop()


def manifest_of(reldir):
    with open(os.path.join(reldir, "manifest.json"), "rb") as f:
        return json.loads(f.read())


# ---------------------------------------------------------------- basics

def test_help_documents_the_options():
    r = subprocess.run([server_bin(), "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    for opt in ("--listen", "--port-file", "--db", "--data-dir", "--admin-token",
                "--admin-token-file", "--enroll-token", "--tls-cert", "--tls-key", "--faults"):
        assert opt in r.stdout
    r = subprocess.run([server_bin(), "serve", "--port", "nope"], capture_output=True, text=True)
    assert r.returncode == 2


def test_every_answer_has_a_request_id_and_errors_are_json(world):
    srv = world["srv"]
    st, h, b = srv.call("GET", "/nowhere")
    assert st == 404 and "detail" in b and h["x-request-id"]
    st, h2, _ = srv.call("GET", "/nowhere")
    assert h2["x-request-id"] != h["x-request-id"]


# ---------------------------------------------------------------- GitHub face

def test_github_latest_asset_download_flow(world, tmp_path):
    srv = world["srv"]
    st, _, rels = srv.call("GET", "/repos/acme/video-app/releases")
    assert st == 200 and len(rels) == 2
    st, _, latest = srv.call("GET", "/repos/acme/video-app/releases/latest")
    assert st == 200
    # the newest published release is "big" (5.0.0)
    assert latest["tag_name"] == "v5.0.0"
    st, _, rel = srv.call("GET", "/repos/acme/video-app/releases/tags/v2.0.0")
    assert st == 200 and rel["tag_name"] == "v2.0.0" and rel["name"] == "2.0.0"
    m = manifest_of(world["rel_v2"])
    names = {a["name"]: a for a in rel["assets"]}
    assert set(names) == {"manifest.json", "manifest.json.sig", m["payload"],
                          m["payload"] + ".sha256"}
    # follow browser_download_url as a client would (no auth: a public repo)
    url = names[m["payload"]]["browser_download_url"]
    out = tmp_path / "payload"
    subprocess.run(["curl", "-sSf", "-o", str(out), url], check=True)
    assert sha256_file(out) == m["sha256"] == sha256_file(world["v2"])
    assert os.path.getsize(out) == names[m["payload"]]["size"]
    path = urllib.parse.urlsplit(names["manifest.json"]["browser_download_url"]).path
    st, _, body = srv.call("GET", path)
    with open(os.path.join(world["rel_v2"], "manifest.json"), "rb") as f:
        assert body == f.read()
    path = urllib.parse.urlsplit(names[m["payload"] + ".sha256"]["browser_download_url"]).path
    st, _, body = srv.call("GET", path)
    assert body.decode() == f"{m['sha256']}  {m['payload']}\n"
    assert srv.call("GET", "/repos/acme/video-app/releases/tags/v9.9.9")[0] == 404
    assert srv.call("GET", "/acme/video-app/releases/download/nope/x")[0] == 404
    assert srv.call("POST", "/repos/acme/video-app/releases/latest", {})[0] == 405


# ---------------------------------------------------------------- device API

def test_register_checkin_status_and_reenrollment(world):
    srv = world["srv"]
    tok = srv.register("reg-1", group="lab", tags=["a", "b"])
    # checkin: v2 is offered to an rpi3b at app 1.0.0
    st, _, b = srv.call("POST", "/api/v1/devices/reg-1/checkin",
                        {"device_type": "rpi3b", "group": "lab", "state": "IDLE",
                         "versions": {"app": "1.0.0", "rootfs": ""},
                         "slots": {"app": "a", "rootfs": "a"}}, token=tok)
    assert st == 200, b
    up = b["update"]
    assert up["release_id"] == world["v2_id"]
    with open(os.path.join(world["rel_v2"], "manifest.json")) as f:
        assert up["manifest"] == f.read()
    assert up["url"].endswith(f"/api/v1/releases/{world['v2_id']}/payload")
    # the device record carries the inventory
    st, _, d = srv.admin("GET", "/api/v1/devices/reg-1")
    assert st == 200 and d["slots"] == {"app": "a", "rootfs": "a"} and d["tags"] == ["a", "b"]
    assert d["checkins"] == 1 and "token" not in json.dumps(d)
    # a status report, twice: accepted twice, stored once
    rep = {"update_id": up["update_id"], "rollout_id": "", "version": "2.0.0", "kind": "app",
           "state": "COMMITTING", "status": "success", "reason": "", "ts": 1795000000123}
    for _ in range(2):
        st, _, b = srv.call("POST", "/api/v1/devices/reg-1/status", rep, token=tok)
        assert st == 200 and b == {"ok": True}
    st, _, reps = srv.admin("GET", f"/api/v1/reports?device=reg-1&update_id={up['update_id']}")
    assert st == 200 and reps["total"] == 1 and reps["reports"][0]["status"] == "success"
    # a final report ends the offer
    st, _, b = srv.call("POST", "/api/v1/devices/reg-1/checkin", {"state": "IDLE"}, token=tok)
    assert st == 200 and b["update"] is None
    # re-enrollment with its current token: 200, a new token; the old one stops working
    tok2 = srv.register("reg-1", token=tok)
    assert tok2 != tok
    assert srv.call("POST", "/api/v1/devices/reg-1/checkin", {}, token=tok)[0] == 401
    assert srv.call("POST", "/api/v1/devices/reg-1/checkin", {}, token=tok2)[0] == 200


def test_offer_depends_on_type_and_version(world):
    srv = world["srv"]
    tok = srv.register("other-type", device_type="x86")
    assert srv.call("POST", "/api/v1/devices/other-type/checkin", {}, token=tok)[2]["update"] is None
    tok = srv.register("up-to-date", app="2.0.0")
    assert srv.call("POST", "/api/v1/devices/up-to-date/checkin", {}, token=tok)[2]["update"] is None
    tok = srv.register("big-1", device_type="bigboard", app="1.0.0")
    st, _, b = srv.call("POST", "/api/v1/devices/big-1/checkin",
                        {"versions": {"app": "1.0.0", "rootfs": "1.0.0"}}, token=tok)
    assert b["update"]["release_id"] == world["big_id"]


def test_isolation_between_devices_and_admin(world):
    srv = world["srv"]
    ta = srv.register("iso-a")
    tb = srv.register("iso-b")
    rep = {"update_id": "u1", "state": "DOWNLOADING", "status": "in_progress"}
    # A cannot act as B
    assert srv.call("POST", "/api/v1/devices/iso-b/status", rep, token=ta)[0] == 403
    assert srv.call("POST", "/api/v1/devices/iso-b/checkin", {}, token=ta)[0] == 403
    assert srv.call("POST", "/api/v1/devices/nobody/checkin", {}, token=ta)[0] == 403
    # A cannot read B, nor anything of the admin API
    for path in ("/api/v1/devices/iso-b", "/api/v1/devices", "/api/v1/reports",
                 "/api/v1/releases", f"/api/v1/releases/{world['v2_id']}"):
        st, h, b = srv.call("GET", path, token=ta)
        assert st == 401 and "detail" in b, path
    assert srv.call("POST", "/api/v1/releases", {"dir": "/"}, token=ta)[0] == 401
    assert srv.call("DELETE", f"/api/v1/releases/{world['v2_id']}", token=ta)[0] == 401
    # the enrollment token is not a device token, nor an admin token
    assert srv.call("POST", "/api/v1/devices/iso-a/checkin", {}, token=ENROLL)[0] == 401
    assert srv.call("GET", "/api/v1/devices", token=ENROLL)[0] == 401
    # no token, bad tokens
    assert srv.call("POST", "/api/v1/devices/iso-a/checkin", {})[0] == 401
    assert srv.call("POST", "/api/v1/devices/iso-a/checkin", {}, token="nope")[0] == 401
    assert srv.call("POST", "/api/v1/devices/iso-a/checkin", {},
                    headers={"Authorization": "Basic eDp5"})[0] == 401
    assert srv.call("POST", "/api/v1/devices/register", {"device_id": "x", "device_type": "t"},
                    token="wrong")[0] == 401
    # downloads need a device token
    p = f"/api/v1/releases/{world['v2_id']}/payload"
    assert srv.call("GET", p)[0] == 401
    assert srv.call("GET", p, token="nope")[0] == 401
    assert srv.call("HEAD", p, token=tb)[0] == 200
    # nothing B owns changed
    st, _, reps = srv.admin("GET", "/api/v1/reports?device=iso-b")
    assert reps["total"] == 0


def device_count(srv):
    return srv.admin("GET", "/api/v1/devices?limit=1")[2]["total"]


def test_bad_input_is_refused_cleanly(world):
    srv = world["srv"]
    tok = srv.register("bad-1")
    before = device_count(srv)
    reports_before = srv.admin("GET", "/api/v1/reports")[2]["total"]
    cases = [
        ("POST", "/api/v1/devices/register", {"raw": b"{not json"}, ENROLL, 400),
        ("POST", "/api/v1/devices/register", {"raw": b"[1,2]"}, ENROLL, 400),
        ("POST", "/api/v1/devices/register", {"raw": b""}, ENROLL, 400),
        ("POST", "/api/v1/devices/register", {"body": {"device_type": "t"}}, ENROLL, 400),
        ("POST", "/api/v1/devices/register", {"body": {"device_id": "n1"}}, ENROLL, 400),
        ("POST", "/api/v1/devices/register",
         {"body": {"device_id": "n2", "device_type": "t", "color": "red"}}, ENROLL, 400),
        ("POST", "/api/v1/devices/register",
         {"body": {"device_id": "../etc", "device_type": "t"}}, ENROLL, 400),
        ("POST", "/api/v1/devices/register",
         {"body": {"device_id": "n3", "device_type": 7}}, ENROLL, 400),
        ("POST", "/api/v1/devices/register",
         {"body": {"device_id": "n4", "device_type": "t", "tags": "x"}}, ENROLL, 400),
        ("POST", "/api/v1/devices/register",
         {"body": {"device_id": "n5", "device_type": "t", "versions": {"kernel": "1"}}}, ENROLL,
         400),
        ("POST", "/api/v1/devices/bad-1/checkin", {"raw": b"{\"state\":"}, tok, 400),
        ("POST", "/api/v1/devices/bad-1/checkin", {"body": {"bogus": 1}}, tok, 400),
        ("POST", "/api/v1/devices/bad-1/checkin", {"body": {"slots": ["a"]}}, tok, 400),
        ("POST", "/api/v1/devices/bad-1/status", {"body": {"state": "IDLE"}}, tok, 400),
        ("POST", "/api/v1/devices/bad-1/status",
         {"body": {"update_id": "u", "state": "IDLE", "status": "great"}}, tok, 400),
        ("POST", "/api/v1/devices/bad-1/status",
         {"body": {"update_id": "u", "state": "IDLE", "status": "success", "ts": "x"}}, tok, 400),
        ("POST", "/api/v1/devices/bad-1/status",
         {"body": {"update_id": "u", "state": "IDLE", "status": "success", "extra": 1}}, tok, 400),
        ("GET", "/api/v1/devices/bad-1/checkin", {}, tok, 405),
        ("GET", "/api/v1/devices?limit=0", {}, ADMIN, 400),
        ("GET", "/api/v1/devices?limit=x", {}, ADMIN, 400),
        ("GET", "/api/v1/devices?colour=red", {}, ADMIN, 400),
        ("GET", "/api/v1/devices/no-such-device", {}, ADMIN, 404),
        ("GET", "/api/v1/releases/no-such-release", {}, ADMIN, 404),
        ("POST", "/api/v1/releases/no-such-release/publish", {}, ADMIN, 404),
        ("DELETE", "/api/v1/releases/no-such-release", {}, ADMIN, 404),
        ("GET", "/api/v1/releases/no-such-release/payload", {}, tok, 404),
        ("GET", f"/api/v1/releases/{world['v2_id']}/secret.txt", {}, tok, 404),
        # %2f decodes to "/": more segments, outside the device face: 401 for a device
        ("GET", f"/api/v1/releases/{world['v2_id']}/..%2f..%2fota-server.db", {}, tok, 401),
        ("GET", f"/api/v1/releases/{world['v2_id']}/..", {}, tok, 404),
        ("POST", "/api/v1/releases", {"body": {"dir": "/nonexistent"}}, ADMIN, 400),
        ("POST", "/api/v1/releases", {"body": {"manifest": "{}", "signature": "x"}}, ADMIN, 400),
        ("POST", "/api/v1/releases", {"body": {"what": 1}}, ADMIN, 400),
        ("GET", "/api/v1/nothing-here", {}, ADMIN, 404),
    ]
    for method, path, kw, token, want in cases:
        st, h, b = srv.call(method, path, token=token, **kw)
        assert st == want, (method, path, kw, st, b)
        assert isinstance(b, dict) and b.get("detail"), (path, b)
    # oversized body (the test server runs with --max-body 65536)
    big = {"device_id": "huge", "device_type": "t", "group": "x" * 70000}
    st, _, b = srv.call("POST", "/api/v1/devices/register", big, token=ENROLL)
    assert st == 413 and "detail" in b
    st, _, b = srv.call("POST", "/api/v1/devices/bad-1/checkin", raw=b" " * (2 << 20), token=tok)
    assert st == 413
    # nothing changed
    assert device_count(srv) == before
    assert srv.admin("GET", "/api/v1/reports")[2]["total"] == reports_before
    # the server still works
    assert srv.call("POST", "/api/v1/devices/bad-1/checkin", {}, token=tok)[0] == 200


# ---------------------------------------------------------------- downloads

def big_paths(world):
    m = manifest_of(world["rel_big"])
    return m, f"/acme/rootfs/releases/download/{world['big_id']}/{m['payload']}"


def test_range_head_etag_if_range(world):
    srv = world["srv"]
    m, path = big_paths(world)
    size = m["size"]
    with open(world["big_img"], "rb") as f:
        data = f.read()
    st, h, body = srv.call("HEAD", path)
    assert st == 200 and int(h["content-length"]) == size and body == b""
    etag, lastmod = h["etag"], h["last-modified"]
    assert h["accept-ranges"] == "bytes" and etag.startswith('"')
    st, h, body = srv.call("GET", path, headers={"Range": "bytes=100-199"})
    assert st == 206 and body == data[100:200] and h["content-range"] == f"bytes 100-199/{size}"
    assert h["etag"] == etag and h["last-modified"] == lastmod
    st, h, body = srv.call("GET", path, headers={"Range": f"bytes={size - 10}-"})
    assert st == 206 and body == data[-10:]
    st, h, body = srv.call("GET", path, headers={"Range": "bytes=-5"})
    assert st == 206 and body == data[-5:]
    st, h, body = srv.call("HEAD", path, headers={"Range": "bytes=10-19"})
    assert st == 206 and h["content-length"] == "10" and body == b""
    st, h, body = srv.call("GET", path, headers={"Range": f"bytes={size}-"})
    assert st == 416 and h["content-range"] == f"bytes */{size}" and "detail" in body
    for bad in ("bytes=5-1", "bytes=abc", "lines=1-2", "bytes=0-1,5-6"):
        st, h, body = srv.call("GET", path, headers={"Range": bad})
        assert st == 200 and body == data, bad
    st, h, body = srv.call("GET", path, headers={"Range": "bytes=1000-", "If-Range": etag})
    assert st == 206 and body == data[1000:]
    st, h, body = srv.call("GET", path, headers={"Range": "bytes=1000-", "If-Range": lastmod})
    assert st == 206
    st, h, body = srv.call("GET", path, headers={"Range": "bytes=1000-", "If-Range": '"stale"'})
    assert st == 200 and body == data
    # the fleet URL serves the same bytes with the same validators
    tok = srv.register("dl-1", device_type="bigboard")
    fleet = f"/api/v1/releases/{world['big_id']}/payload"
    st, h, body = srv.call("GET", fleet, token=tok, headers={"Range": "bytes=0-9"})
    assert st == 206 and body == data[:10] and h["etag"] == etag


def truncate_copy(src, dst, n):
    with open(src, "rb") as f, open(dst, "wb") as g:
        g.write(f.read(n))


def test_curl_and_wget_resume_to_the_exact_bytes(world, tmp_path):
    srv = world["srv"]
    m, path = big_paths(world)
    url = srv.url + path
    want = m["sha256"]
    # curl -r
    out = tmp_path / "part"
    subprocess.run(["curl", "-sSf", "-r", "1000-1999", "-o", str(out), url], check=True)
    with open(world["big_img"], "rb") as f:
        assert out.read_bytes() == f.read()[1000:2000]
    # curl -C - from a truncated file
    out = tmp_path / "curl.img"
    truncate_copy(world["big_img"], out, 1234567)
    subprocess.run(["curl", "-sSf", "-C", "-", "-o", str(out), url], check=True)
    assert sha256_file(out) == want
    # curl -C - on the complete file: 416 is "already complete" for curl
    r = subprocess.run(["curl", "-sS", "-C", "-", "-o", str(out), url], capture_output=True)
    assert sha256_file(out) == want
    # wget -c from a truncated file, with a device token on the fleet URL
    tok = srv.register("wget-1", device_type="bigboard")
    out = tmp_path / "wget.img"
    truncate_copy(world["big_img"], out, 777777)
    subprocess.run(["wget", "-q", "-c", "--header", f"Authorization: Bearer {tok}", "-O", str(out),
                    f"{srv.url}/api/v1/releases/{world['big_id']}/payload"], check=True)
    assert sha256_file(out) == want
    # wget -c of the GitHub URL
    out = tmp_path / m["payload"]
    truncate_copy(world["big_img"], out, 5)
    subprocess.run(["wget", "-q", "-c", "-O", str(out), url], check=True)
    assert sha256_file(out) == want


# ---------------------------------------------------------------- admin API

def test_release_upload_publish_delete(world, tmp_path):
    srv = world["srv"]
    keys = world["keys"]
    v3 = otadev.make_package(str(tmp_path), "video-app-v2", "3.0.0", "tar.gz")
    out = otadev.publish(str(tmp_path), "v3", v3, "3.0.0", keys)
    with open(os.path.join(out, "manifest.json")) as f:
        manifest = f.read()
    with open(os.path.join(out, "manifest.json.sig")) as f:
        sig = f.read().strip()
    st, _, rel = srv.admin("POST", "/api/v1/releases",
                           {"id": "v3-upload", "manifest": manifest, "signature": sig})
    assert st == 201 and rel["has_payload"] is False and rel["published"] is False
    assert srv.admin("POST", "/api/v1/releases",
                     {"id": "v3-upload", "manifest": manifest, "signature": sig})[0] == 409
    assert srv.admin("POST", "/api/v1/releases/v3-upload/publish")[0] == 409
    # a payload that is not the manifest's is refused
    st, _, b = srv.admin("PUT", "/api/v1/releases/v3-upload/payload", raw=b"x" * 100)
    assert st == 400, b
    with open(v3, "rb") as f:
        data = f.read()
    assert srv.call("PUT", "/api/v1/releases/v3-upload/payload", raw=data, token="x")[0] == 401
    bad = bytearray(data)
    bad[10] ^= 1
    assert srv.admin("PUT", "/api/v1/releases/v3-upload/payload", raw=bytes(bad))[0] == 400
    st, _, rel = srv.admin("PUT", "/api/v1/releases/v3-upload/payload", raw=data)
    assert st == 200 and rel["has_payload"] is True
    assert srv.admin("PUT", "/api/v1/releases/v3-upload/payload", raw=data)[0] == 409
    # unpublished: invisible to devices and to the GitHub face
    tok = srv.register("adm-1")
    assert srv.call("GET", "/api/v1/releases/v3-upload/payload", token=tok)[0] == 404
    assert srv.call("GET", "/repos/a/b/releases/tags/v3.0.0")[0] == 404
    st, _, rel = srv.admin("POST", "/api/v1/releases/v3-upload/publish")
    assert st == 200 and rel["published"] is True
    st, _, b = srv.call("POST", "/api/v1/devices/adm-1/checkin", {}, token=tok)
    assert b["update"]["release_id"] == "v3-upload"
    st, _, body = srv.call("GET", "/api/v1/releases/v3-upload/payload", token=tok)
    assert st == 200 and body == data
    # list, filter
    st, _, lst = srv.admin("GET", "/api/v1/releases?published=1")
    assert "v3-upload" in [r["id"] for r in lst["releases"]]
    # a signature that the --public-key does not verify is refused
    st, _, b = srv.admin("POST", "/api/v1/releases",
                         {"id": "forged", "manifest": manifest.replace("3.0.0", "3.0.1"),
                          "signature": sig})
    assert st == 400 and "signature" in b["detail"]
    # delete
    st, _, b = srv.admin("DELETE", "/api/v1/releases/v3-upload")
    assert st == 200
    assert srv.admin("GET", "/api/v1/releases/v3-upload")[0] == 404
    assert srv.call("GET", "/api/v1/releases/v3-upload/payload", token=tok)[0] == 404


def test_devices_filters_and_pagination(world):
    srv = world["srv"]
    for i in range(7):
        srv.register(f"flt-{i}", device_type="flt", group="g1" if i % 2 else "g2",
                     app="1.0.0" if i < 3 else "1.5.0", tags=["even"] if i % 2 == 0 else [])
    q = lambda s: srv.admin("GET", "/api/v1/devices?" + s)[2]  # noqa: E731
    assert q("type=flt")["total"] == 7
    assert q("type=flt&group=g1")["total"] == 3
    assert q("type=flt&tag=even")["total"] == 4
    assert q("type=flt&version=1.5.0")["total"] == 4
    assert q("type=flt&version=1.5.0&kind=app")["total"] == 4
    assert q("type=flt&version=1.5.0&kind=rootfs")["total"] == 0
    seen, offset = [], 0
    while offset is not None:
        page = q(f"type=flt&limit=3&offset={offset}")
        assert len(page["devices"]) <= 3
        seen += [d["device_id"] for d in page["devices"]]
        offset = page["next_offset"]
    assert seen == [f"flt-{i}" for i in range(7)]


# ---------------------------------------------------------------- durability

def test_kill9_under_load_loses_no_acknowledged_write(tmp_path):
    srv = Server(str(tmp_path))
    acked_devices, acked_reports = [], []
    lock = threading.Lock()
    stop = threading.Event()

    def worker(n):
        i = 0
        while not stop.is_set():
            did = f"k{n}-{i}"
            i += 1
            try:
                st, _, b = srv.call("POST", "/api/v1/devices/register",
                                    {"device_id": did, "device_type": "t"}, token=ENROLL,
                                    timeout=5)
                if st != 201:
                    continue
                with lock:
                    acked_devices.append(did)
                rep = {"update_id": "u-1", "state": "DOWNLOADING", "status": "in_progress",
                       "ts": i}
                st, _, _ = srv.call("POST", f"/api/v1/devices/{did}/status", rep,
                                    token=b["token"], timeout=5)
                if st == 200:
                    with lock:
                        acked_reports.append(did)
            except (OSError, http.client.HTTPException):
                pass

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    srv.kill9()
    stop.set()
    for t in threads:
        t.join()
    assert len(acked_devices) > 20
    srv.start()
    try:
        st, _, devs = srv.admin("GET", "/api/v1/devices?limit=1000")
        have = set()
        offset = 0
        while True:
            page = srv.admin("GET", f"/api/v1/devices?limit=1000&offset={offset}")[2]
            have |= {d["device_id"] for d in page["devices"]}
            if page["next_offset"] is None:
                break
            offset = page["next_offset"]
        missing = set(acked_devices) - have
        assert not missing, sorted(missing)[:10]
        reps = srv.admin("GET", "/api/v1/reports?limit=10000")[2]
        got = {r["device_id"] for r in reps["reports"]}
        assert not set(acked_reports) - got
        # and the restarted server takes new writes
        srv.register("after-restart")
    finally:
        srv.stop()


def test_checkin_inventory_durable_heartbeat_flushed(tmp_path):
    """Inventory changes are on disk before the answer; last_checkin_ms and
    checkins live in memory (the admin API shows them at once) and reach the
    disk within ~200 ms, and at a clean stop."""
    srv = Server(str(tmp_path))
    try:
        tok = srv.register("hb-1", device_type="t")
        body = {"device_type": "t", "state": "IDLE", "versions": {"app": "1.0.0", "rootfs": "3"}}
        for _ in range(3):
            st, _, b = srv.call("POST", "/api/v1/devices/hb-1/checkin", body, token=tok)
            assert st == 200, b
        st, _, d = srv.admin("GET", "/api/v1/devices/hb-1")
        assert st == 200 and d["checkins"] == 3 and d["last_checkin_ms"] > 0
        listed = srv.admin("GET", "/api/v1/devices?limit=10")[2]["devices"]
        assert [x["checkins"] for x in listed if x["device_id"] == "hb-1"] == [3]
        time.sleep(0.8)  # > the flush interval
        # an inventory change, killed right after the answer: it is on disk
        st, _, b = srv.call("POST", "/api/v1/devices/hb-1/checkin", dict(body, state="BUSY"),
                            token=tok)
        assert st == 200, b
        srv.kill9()
        srv.start()
        st, _, d = srv.admin("GET", "/api/v1/devices/hb-1")
        assert st == 200 and d["state"] == "BUSY" and d["versions"]["rootfs"] == "3"
        assert d["checkins"] in (3, 4)  # the last heartbeat may be lost with kill -9
        n = d["checkins"]
        # the token still works after the restart; a clean stop flushes
        st, _, b = srv.call("POST", "/api/v1/devices/hb-1/checkin", {}, token=tok)
        assert st == 200, b
        srv.stop()
        srv.start()
        st, _, d = srv.admin("GET", "/api/v1/devices/hb-1")
        assert st == 200 and d["checkins"] == n + 1 and d["state"] == "BUSY"
        # re-enrollment rotates the token: the old one is refused at once
        tok2 = srv.register("hb-1", device_type="t", token=tok)
        st, _, _ = srv.call("POST", "/api/v1/devices/hb-1/checkin", {}, token=tok)
        assert st == 401
        st, _, b = srv.call("POST", "/api/v1/devices/hb-1/checkin", {}, token=tok2)
        assert st == 200, b
    finally:
        srv.stop()


def test_admin_token_file_is_generated_and_reused(tmp_path):
    port_file = tmp_path / "port"
    tok_file = tmp_path / "admin.token"
    cmd = [server_bin(), "serve", "--port", "0", "--port-file", str(port_file), "--db",
           str(tmp_path / "db"), "--data-dir", str(tmp_path / "d"), "--admin-token-file",
           str(tok_file)]
    for _ in range(2):
        p = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 10
            while not port_file.exists() and time.time() < deadline:
                time.sleep(0.02)
            token = tok_file.read_text().strip()
            assert len(token) >= 32 and (os.stat(tok_file).st_mode & 0o077) == 0
            c = http.client.HTTPConnection("127.0.0.1", int(port_file.read_text()), timeout=10)
            c.request("GET", "/api/v1/devices", headers={"Authorization": f"Bearer {token}"})
            assert c.getresponse().status == 200
            c.close()
        finally:
            p.terminate()
            p.wait()
            port_file.unlink()


# ---------------------------------------------------------------- the real agent

def test_real_agent_updates_v1_to_v2(world, tmp_path):
    srv = world["srv"]
    dev = otadev.Device(str(tmp_path / "agent-dev"), srv, world["keys"], world["v1"],
                        device_id="agent-dev-1")
    try:
        assert dev.app_version()["version"] == "1.0.0"
        r = dev.agent("update")
        assert r.returncode == 0, r.stderr
        assert dev.current() == "b"
        assert dev.app_version()["version"] == "2.0.0"
        st, _, reps = srv.admin("GET", "/api/v1/reports?device=agent-dev-1")
        assert st == 200
        statuses = [x["status"] for x in reps["reports"]]
        assert statuses[-1] == "success", reps
        assert set(statuses[:-1]) <= {"in_progress"}
        assert reps["reports"][-1]["update_id"] == f"rel-{world['v2_id']}"
        st, _, d = srv.admin("GET", "/api/v1/devices/agent-dev-1")
        assert d["device_type"] == "rpi3b"
        # checking again: nothing more to do
        r = dev.agent("update")
        assert r.returncode == 0, r.stderr
        assert dev.current() == "b"
    finally:
        dev.stop()


def make_cert(dirpath):
    cert, key = os.path.join(dirpath, "cert.pem"), os.path.join(dirpath, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext",
                    "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


def test_real_agent_over_tls_with_a_pinned_ca(world, tmp_path):
    srv = Server(str(tmp_path), tls=make_cert(str(tmp_path)))
    try:
        st, _, rel = srv.admin("POST", "/api/v1/releases", {"dir": world["rel_v2"],
                                                              "publish": True})
        assert st == 201, rel
        # plain HTTP on the TLS port does not get an answer
        r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                            f"http://127.0.0.1:{srv.port}/repos/a/b/releases"],
                           capture_output=True, text=True)
        assert r.stdout != "200"
        dev = otadev.Device(str(tmp_path / "tls-dev"), srv, world["keys"], world["v1"],
                            device_id="tls-dev-1", transport={"ca_file": srv.tls[0]})
        try:
            r = dev.agent("update")
            assert r.returncode == 0, r.stderr
            assert dev.app_version()["version"] == "2.0.0"
            reps = srv.admin("GET", "/api/v1/reports?device=tls-dev-1")[2]["reports"]
            assert reps[-1]["status"] == "success"
            st, _, b = srv.call("POST", "/api/v1/devices/tls-dev-1/checkin", {}, token="x")
            assert st == 401
        finally:
            dev.stop()
    finally:
        srv.stop()


def test_real_agent_github_source(world, tmp_path):
    """The seed-000 flow: the agent polls releases/latest, fetches the
    manifest assets and the payload from browser_download_url."""
    srv = Server(str(tmp_path))
    try:
        assert srv.admin("POST", "/api/v1/releases", {"dir": world["rel_v2"],
                                                       "publish": True})[0] == 201
        dev = otadev.Device(str(tmp_path / "gh-dev"), srv, world["keys"], world["v1"],
                            device_id="gh-dev-1",
                            agent_extra={"source": "github", "repo": "acme/video-app"})
        try:
            r = dev.agent("update")
            assert r.returncode == 0, r.stderr
            assert dev.app_version()["version"] == "2.0.0"
        finally:
            dev.stop()
        # the GitHub face has no device state: nobody registered
        assert srv.admin("GET", "/api/v1/devices")[2]["total"] == 0
    finally:
        srv.stop()


def test_admin_commands(world, tmp_path):
    srv = Server(str(tmp_path))
    ctl = [server_bin()]
    common = ["--server", srv.url, "--admin-token", ADMIN]
    try:
        r = subprocess.run(ctl + ["release", "add", world["rel_v2"], "--id", "cli-v2",
                                  "--publish"] + common, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        rel = json.loads(r.stdout)
        assert rel["id"] == "cli-v2" and rel["published"] and rel["has_payload"]
        r = subprocess.run(ctl + ["release", "list"] + common, capture_output=True, text=True)
        assert [x["id"] for x in json.loads(r.stdout)["releases"]] == ["cli-v2"]
        # refused: exit 1 with the server's detail
        r = subprocess.run(ctl + ["release", "add", world["rel_v2"], "--id", "cli-v2"] + common,
                           capture_output=True, text=True)
        assert r.returncode == 1 and "exists" in r.stderr
        srv.register("cli-dev", group="g x")
        r = subprocess.run(ctl + ["devices", "--group", "g x"] + common, capture_output=True,
                           text=True)
        assert r.returncode == 0 and json.loads(r.stdout)["total"] == 1
        r = subprocess.run(ctl + ["device", "cli-dev"] + common, capture_output=True, text=True)
        assert json.loads(r.stdout)["device_id"] == "cli-dev"
        r = subprocess.run(ctl + ["reports", "--server", srv.url, "--admin-token", "bad"],
                           capture_output=True, text=True)
        assert r.returncode == 1 and "401" in r.stderr
        r = subprocess.run(ctl + ["release", "delete", "cli-v2"] + common, capture_output=True,
                           text=True)
        assert r.returncode == 0 and json.loads(r.stdout) == {"deleted": "cli-v2"}
        r = subprocess.run(ctl + ["release", "frobnicate"] + common, capture_output=True,
                           text=True)
        assert r.returncode == 2
    finally:
        srv.stop()
