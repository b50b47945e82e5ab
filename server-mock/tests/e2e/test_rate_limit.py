"""Per-device rate limits on the fleet API (docs/protocol.md, "Rate
limits"): --device-rate-limit N/PERIOD, 429 with Retry-After, keyed on the
device (every device here comes from 127.0.0.1), off by default; and the
real ota-agent keeps the Retry-After. Over real HTTP."""
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from test_server_api import Server, otadev, server_bin  # noqa: E402


def checkin(srv, dev, tok):
    return srv.call("POST", f"/api/v1/devices/{dev}/checkin", {"state": "IDLE"}, token=tok)


def test_default_is_no_limit(tmp_path):
    srv = Server(str(tmp_path))
    try:
        tok = srv.register("free-1")
        assert all(checkin(srv, "free-1", tok)[0] == 200 for _ in range(60))
    finally:
        srv.stop()


def test_over_the_limit_is_429_with_retry_after_per_device(tmp_path):
    srv = Server(str(tmp_path), extra=["--device-rate-limit", "3/m"])
    try:
        tok = srv.register("lim-1")  # the registration is one of the 3
        assert checkin(srv, "lim-1", tok)[0] == 200
        assert checkin(srv, "lim-1", tok)[0] == 200
        st, h, b = checkin(srv, "lim-1", tok)
        assert st == 429, b
        assert 1 <= int(h["retry-after"]) <= 20, h  # one request per 20 s
        assert "rate limit" in b["detail"] and "lim-1" in b["detail"], b
        # reports and downloads count for the same device
        rep = {"update_id": "u", "state": "IDLE", "status": "failure"}
        st, _, _ = srv.call("POST", "/api/v1/devices/lim-1/status", rep, token=tok)
        assert st == 429
        # another device from the same address is not limited by lim-1's use
        tok2 = srv.register("lim-2")
        assert checkin(srv, "lim-2", tok2)[0] == 200
        # a request that is not lim-1's (a wrong token) is 401, and takes
        # nothing from anyone
        assert checkin(srv, "lim-1", "wrong")[0] == 401
        assert checkin(srv, "lim-2", tok2)[0] == 200
        # the admin API is not limited
        assert all(srv.admin("GET", "/api/v1/devices/lim-1")[0] == 200 for _ in range(10))
    finally:
        srv.stop()


@pytest.mark.parametrize("bad", ["0/s", "3", "3/d", "-1/s", "3/ss", "x/m"])
def test_bad_limits_are_refused_at_start(tmp_path, bad):
    r = subprocess.run([server_bin(), "serve", "--port", "0", "--db", str(tmp_path / "db"),
                        "--data-dir", str(tmp_path / "d"), "--device-rate-limit", bad],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "--device-rate-limit" in r.stderr, r.stderr


def test_the_real_agent_keeps_the_retry_after(tmp_path):
    work = str(tmp_path)
    keys = otadev.Keys(work)
    v1 = otadev.make_package(work, "video-app", "1.0.0", "tar.gz")
    os.makedirs(tmp_path / "srv")
    srv = Server(str(tmp_path / "srv"), extra=["--device-rate-limit", "2/h"])
    dev = otadev.Device(str(tmp_path / "agent"), srv, keys, v1, device_id="rl-agent")
    try:
        r = dev.agent("update")  # registers and checks in: the 2 of the hour
        assert r.returncode == 0, r.stderr
        r = dev.agent("update")
        assert r.returncode != 0 and "server busy: HTTP 429, Retry-After" in r.stderr, r.stderr
        n = len(srv.requests())
        r = dev.agent("update")
        assert r.returncode != 0 and "the server asked to wait until" in r.stderr, r.stderr
        assert len(srv.requests()) == n, "the agent asked before Retry-After"
    finally:
        dev.stop()
        srv.stop()
