"""What the agent's end-to-end tests (agent/tests/e2e) need of ota-server
beyond serving good releases: the access log names the Range and If-Range
of each request (how a client resumed), and the admin API stores a release
no honest server would take ("check": false) so that a device can be
offered it and must refuse it.

Needs OTA_BUILD_DIR like test_server_api.py (whose helpers it reuses)."""

import json
import os
import shutil
import time

import pytest

from test_server_api import ENROLL, Server, manifest_of
import otadev  # noqa: E402  (test_server_api put it on sys.path)


@pytest.fixture(scope="module")
def sw(tmp_path_factory):
    work = str(tmp_path_factory.mktemp("support"))
    keys = otadev.Keys(work)
    img, _ = otadev.make_image(work, "img", 64 << 10, seed=5)
    out = os.path.join(work, "out")
    os.makedirs(out)
    good = otadev.publish(out, "good", img, "2.0.0", keys, kind="rootfs", fmt="raw")
    srv_dir = os.path.join(work, "server")
    os.makedirs(srv_dir)
    srv = Server(srv_dir, extra=["--public-key", keys.pub])
    st, _, rel = srv.admin("POST", "/api/v1/releases", {"dir": good, "publish": True})
    assert st == 201, rel
    yield {"work": work, "out": out, "good": good, "srv": srv, "rel": rel, "keys": keys}
    srv.stop()


def log_line(srv, request_id):
    """The access log's line of a request (written once the server is done
    with it, a moment after the client has the answer)."""
    for _ in range(50):
        for x in srv.requests():
            if x["id"] == request_id:
                return x
        time.sleep(0.05)
    raise AssertionError(f"request {request_id} not in the access log")


def test_access_log_names_range_and_if_range(sw):
    srv, rid = sw["srv"], sw["rel"]["id"]
    path = f"/api/v1/releases/{rid}/payload"
    st, h, _ = srv.admin("GET", path)
    assert st == 200
    whole = log_line(srv, h["x-request-id"])
    assert "range" not in whole and "if_range" not in whole
    st, h2, body = srv.admin("GET", path, headers={"Range": "bytes=1000-", "If-Range": h["etag"]})
    assert st == 206 and len(body) == sw["rel"]["size"] - 1000
    line = log_line(srv, h2["x-request-id"])
    assert line["range"] == "bytes=1000-" and line["if_range"] == h["etag"]
    assert line["status"] == 206 and line["path"] == path


def bad_release(sw, rid, edit_manifest=None, signature=None, payload_extra=b""):
    out = os.path.join(sw["out"], rid)
    shutil.copytree(sw["good"], out)
    path = os.path.join(out, "manifest.json")
    m = manifest_of(out)
    if edit_manifest:
        edit_manifest(m)
        with open(path, "w") as f:
            f.write(json.dumps(m, separators=(",", ":")))
    if signature:
        with open(os.path.join(out, "manifest.json.sig"), "w") as f:
            f.write(signature + "\n")
    with open(os.path.join(out, m["payload"]), "ab") as f:
        f.write(payload_extra)
    return out


def test_unchecked_release_is_stored_and_served_as_given(sw):
    srv = sw["srv"]
    out = bad_release(sw, "bad", lambda m: m.update(version="two", exec="x"),
                      signature="bm90IGEgc2lnbmF0dXJl", payload_extra=b"1000 more")
    with open(os.path.join(out, "manifest.json")) as f:
        text = f.read()
    st, _, b = srv.admin("POST", "/api/v1/releases", {"dir": out, "id": "bad", "publish": True})
    assert st == 400, b  # checked, as always
    for body in ({"dir": out, "check": False}, {"dir": out, "id": "bad", "check": True}):
        st, _, b = srv.admin("POST", "/api/v1/releases", body)
        assert st == 400, (body, b)
    st, _, rel = srv.admin("POST", "/api/v1/releases",
                           {"dir": out, "id": "bad", "check": False, "publish": True})
    assert st == 201, rel
    assert rel["manifest"] == text and rel["signature"] == "bm90IGEgc2lnbmF0dXJl"
    assert rel["version"] == "two" and rel["published"]
    # A device is offered it as it is and downloads the payload as it is.
    token = srv.register("dev-unchecked", device_type="rpi3b")
    st, _, ro = srv.admin("POST", "/api/v1/rollouts", {"id": "u1", "release_id": "bad",
                                                        "strategy": "manual",
                                                        "devices": ["dev-unchecked"]})
    assert st == 201, ro
    for action in ("approve", "start"):
        assert srv.admin("POST", f"/api/v1/rollouts/u1/{action}")[0] == 200
    st, _, ans = srv.call("POST", "/api/v1/devices/dev-unchecked/checkin", {}, token=token)
    assert st == 200 and ans["update"]["release_id"] == "bad", ans
    assert ans["update"]["manifest"] == text
    assert ans["update"]["signature"] == "bm90IGEgc2lnbmF0dXJl"
    st, _, got = srv.call("GET", "/api/v1/releases/bad/payload", token=token)
    with open(os.path.join(out, manifest_of(out)["payload"]), "rb") as f:
        assert st == 200 and got == f.read()
    assert ENROLL  # the device registered with the server's enrollment token
