"""Enrollment (docs/protocol.md, "Register"): closed unless configured, and
a known device id cannot be taken over with the fleet-wide enrollment token:
re-enrollment needs the device's current token or an admin's approval.
Over real HTTP against the real ota-server."""
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from test_server_api import ENROLL, Server, server_bin  # noqa: E402

REG = "/api/v1/devices/register"


def body(dev, **kw):
    return {"device_id": dev, "device_type": "rpi3b", **kw}


def checkin(srv, dev, tok):
    return srv.call("POST", f"/api/v1/devices/{dev}/checkin", {"state": "IDLE"}, token=tok)[0]


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = Server(str(tmp_path_factory.mktemp("enroll")))
    yield s
    s.stop()


def test_enrollment_is_closed_without_a_token_or_open_enrollment(tmp_path):
    s = Server(str(tmp_path), enroll=())
    try:
        st, _, b = s.call("POST", REG, body("c-1"), token="anything")
        assert st == 401 and "enrollment is closed" in b["detail"], b
        st, _, b = s.admin("GET", "/api/v1/devices")
        assert st == 200 and b["total"] == 0
    finally:
        s.stop()


def test_open_enrollment_takes_any_token_but_not_a_known_device(tmp_path):
    s = Server(str(tmp_path), enroll=("--open-enrollment",))
    try:
        st, _, b = s.call("POST", REG, body("o-1"), token="whatever")
        assert st == 201, b
        tok = b["token"]
        assert checkin(s, "o-1", tok) == 200
        # another "whatever" cannot take the device over, nor a request without a token
        st, _, b = s.call("POST", REG, body("o-1"), token="someone-else")
        assert st == 409, b
        assert s.call("POST", REG, body("o-1"))[0] == 409
        assert checkin(s, "o-1", tok) == 200
        # a new id needs no token at all here (as the old default did)
        assert s.call("POST", REG, body("o-2"))[0] == 201
    finally:
        s.stop()


def test_enroll_token_and_open_enrollment_together_are_refused(tmp_path):
    r = subprocess.run([server_bin(), "serve", "--port", "0", "--db", str(tmp_path / "db"),
                        "--data-dir", str(tmp_path / "d"), "--admin-token", "a",
                        "--enroll-token", "e", "--open-enrollment"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "--open-enrollment" in r.stderr, r.stderr


def test_the_enrollment_token_cannot_take_over_a_device(srv):
    tok = srv.register("t-1")
    assert checkin(srv, "t-1", tok) == 200
    st, _, b = srv.call("POST", REG, body("t-1"), token=ENROLL)
    assert st == 409, b
    assert "current token" in b["detail"] and "/api/v1/devices/t-1/reenroll" in b["detail"]
    # nothing changed: the device's token still works
    assert checkin(srv, "t-1", tok) == 200
    # a wrong token is 401 as for a new id
    assert srv.call("POST", REG, body("t-1"), token="wrong")[0] == 401


def test_the_device_re_enrolls_with_its_current_token(srv):
    tok = srv.register("t-2")
    assert checkin(srv, "t-2", tok) == 200
    tok2 = srv.register("t-2", token=tok)
    assert tok2 != tok
    assert checkin(srv, "t-2", tok) == 401
    assert checkin(srv, "t-2", tok2) == 200
    # another device's token is no key to this one
    other = srv.register("t-2b")
    assert srv.call("POST", REG, body("t-2"), token=other)[0] == 401


def test_an_admin_approves_one_re_enrollment(srv):
    tok = srv.register("t-3")
    assert checkin(srv, "t-3", tok) == 200
    # the approval is an admin call: a device token or the enrollment token is 401
    for t in (tok, ENROLL):
        assert srv.call("POST", "/api/v1/devices/t-3/reenroll", token=t)[0] == 401
    assert srv.admin("POST", "/api/v1/devices/nobody/reenroll")[0] == 404
    st, _, b = srv.admin("POST", "/api/v1/devices/t-3/reenroll")
    assert st == 200 and b == {"device_id": "t-3", "reenroll_allowed": True}, b
    # the device that lost its data partition registers again with the enrollment token
    tok2 = srv.register("t-3")
    assert checkin(srv, "t-3", tok) == 401
    assert checkin(srv, "t-3", tok2) == 200
    # once: the next try needs a new approval
    assert srv.call("POST", REG, body("t-3"), token=ENROLL)[0] == 409


def test_a_token_never_used_can_be_replaced_with_the_enrollment_token(srv):
    # the device lost power between the server's answer and writing its token
    tok = srv.register("t-4")
    tok2 = srv.register("t-4")
    assert checkin(srv, "t-4", tok) == 401
    assert checkin(srv, "t-4", tok2) == 200
    # once it is used, the enrollment token no longer does
    assert srv.call("POST", REG, body("t-4"), token=ENROLL)[0] == 409
