"""The GitHub face's rate limit (serve --github-rate-limit, docs/protocol.md
"Rate limit") over real HTTP, on the virtual clock so that nothing waits an
hour: X-RateLimit-* on every API answer, 403 (or 429) with GitHub's kind of
message past the limit, Retry-After when asked, a new window at the reset,
tokens raising the limit, a bad token refused, clients keyed by a header,
asset downloads not counted, and no headers at all without the option.

Needs OTA_BUILD_DIR like test_server_api.py (whose helpers it reuses)."""

import os

import pytest

from test_server_api import Server
import otadev  # noqa: E402  (test_server_api put it on sys.path)

T0 = 1_800_000_000_000  # the virtual clock's start (unix ms)
LATEST = "/repos/acme/app/releases/latest"


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    work = str(tmp_path_factory.mktemp("ghrl"))
    keys = otadev.Keys(work)
    v2 = otadev.make_package(work, "video-app-v2", "2.0.0", "tar.gz")
    out = os.path.join(work, "out")
    os.makedirs(out)
    return {"work": work, "dir": otadev.publish(out, "v2", v2, "2.0.0", keys), "keys": keys}


def start(release, name, *extra):
    d = os.path.join(release["work"], name)
    os.makedirs(d)
    srv = Server(d, extra=["--virtual-clock", str(T0)] + list(extra))
    st, _, b = srv.admin("POST", "/api/v1/releases",
                         {"dir": release["dir"], "id": "v2", "publish": True})
    assert st == 201, b
    return srv


def advance_ms(srv, ms):
    st, _, b = srv.admin("POST", "/api/v1/admin/clock", {"advance_ms": ms})
    assert st == 200, b


def rl(h):
    return {k: h.get("x-ratelimit-" + k) for k in ("limit", "remaining", "used", "reset",
                                                   "resource")}


def test_limit_window_and_reset(release):
    srv = start(release, "plain", "--github-rate-limit", "60/h")
    try:
        reset = str(T0 // 1000 + 3600)
        for i in range(1, 61):
            st, h, b = srv.call("GET", LATEST)
            assert st == 200, b
            assert rl(h) == {"limit": "60", "remaining": str(60 - i), "used": str(i),
                             "reset": reset, "resource": "core"}
            # On the virtual clock Date is its time too (what Reset is measured against).
            assert h["date"] == "Fri, 15 Jan 2027 08:00:00 GMT", h
        # Any API answer carries them, a 404 included, and counts.
        st, h, b = srv.call("GET", "/repos/acme/app/releases/tags/v9")
        assert st == 403 and rl(h)["remaining"] == "0", (st, h)
        assert "API rate limit exceeded for 127.0.0.1" in b["message"], b
        assert b["documentation_url"].startswith("https://docs.github.com/"), b
        assert "retry-after" not in h
        advance_ms(srv, 1000)
        st, h, b = srv.call("GET", LATEST)
        assert st == 403
        advance_ms(srv, 3600 * 1000 - 1000 - 1)  # 1 ms before the reset
        st, h, b = srv.call("GET", LATEST)
        assert st == 403 and h["x-ratelimit-reset"] == reset
        advance_ms(srv, 1)  # the reset: a new window opens
        st, h, b2 = srv.call("GET", LATEST)
        assert st == 200 and rl(h)["remaining"] == "59", h
        assert h["x-ratelimit-reset"] == str(int(reset) + 3600)
        # Asset downloads are not API requests: served, not counted, no headers.
        asset = b2["assets"][0]["browser_download_url"].split(str(srv.port), 1)[1]
        for _ in range(5):
            st, h, _ = srv.call("GET", asset)
            assert st == 200 and "x-ratelimit-remaining" not in h, h
        st, h, _ = srv.call("GET", LATEST)
        assert h["x-ratelimit-remaining"] == "58", "asset downloads were counted"
    finally:
        srv.stop()


def test_429_retry_after_tokens_and_keys(release):
    srv = start(release, "full", "--github-rate-limit", "2/h", "--github-auth-limit", "5",
                "--github-token", "tok-1", "--github-rate-status", "429",
                "--github-retry-after", "--github-rate-key", "X-Sim-Client")
    try:
        for _ in range(2):
            assert srv.call("GET", LATEST, headers={"X-Sim-Client": "dev-a"})[0] == 200
        advance_ms(srv, 600 * 1000)
        st, h, b = srv.call("GET", LATEST, headers={"X-Sim-Client": "dev-a"})
        assert st == 429 and h["retry-after"] == "3000", (st, h)
        assert "dev-a" in b["message"]
        # Another key has a window of its own; so do requests without the header.
        assert srv.call("GET", LATEST, headers={"X-Sim-Client": "dev-b"})[0] == 200
        assert srv.call("GET", LATEST)[0] == 200
        # A token the face accepts: its own, larger limit; either scheme.
        for i, scheme in enumerate(["token", "Bearer", "token", "bearer", "token"]):
            st, h, _ = srv.call("GET", LATEST, headers={"Authorization": f"{scheme} tok-1",
                                                        "X-Sim-Client": "dev-a"})
            assert st == 200 and h["x-ratelimit-limit"] == "5", (st, h)
            assert h["x-ratelimit-remaining"] == str(4 - i)
        st, h, b = srv.call("GET", LATEST, headers={"Authorization": "token tok-1"})
        assert st == 429 and "token" in b["message"], b
        # Not a token it knows: 401, as GitHub's "Bad credentials".
        st, h, b = srv.call("GET", LATEST, headers={"Authorization": "token nope"})
        assert st == 401 and b["message"] == "Bad credentials", b
    finally:
        srv.stop()


def test_off_by_default_and_bad_options(release):
    srv = start(release, "off")
    try:
        for _ in range(70):
            st, h, _ = srv.call("GET", LATEST)
            assert st == 200 and "x-ratelimit-limit" not in h
    finally:
        srv.stop()
    import subprocess
    from test_server_api import server_bin
    for args in (["--github-rate-limit", "0"], ["--github-rate-limit", "5/x"],
                 ["--github-rate-limit", "5", "--github-rate-status", "500"],
                 ["--github-token", "t"]):
        p = subprocess.run([server_bin(), "serve", "--port", "0"] + args,
                           capture_output=True, text=True, timeout=10)
        assert p.returncode == 2, (args, p.stderr)
