"""A device on the GitHub source meets GitHub's rate limit (docs/DESIGN.md
"GitHub's rate limit", docs/protocol.md "Rate limit"), in two virtual hours
that take seconds: the real ota-server on its virtual clock with
`--github-rate-limit 60/h`, the real ota-agent under libfaketime, its wall
clock set to the server's virtual now at every pass.

The device runs an `ota-agent update` pass every 30 virtual seconds (twice
what 60/h allows). At minute 10 a neighbour behind the same address (every
client here is 127.0.0.1, as devices behind one NAT are to GitHub) uses up
the rest of the window; the device's next request is refused. At minute 75
release 2.0.0 appears. Asserted, from the server's access log:
  - per window of the limit, the device makes at most 60 API requests and is
    refused (403) at most once: it waits for X-RateLimit-Reset, and does not
    ask at all once an answer said Remaining 0;
  - while it waits, `ota-agent status` says "rate limited until <the reset>";
  - it still installs 2.0.0 after it appears.
An agent that ignores the limit (OTA_RATELIMIT_AGENT=path/to/such an agent)
fails the second: it is refused at each of the ~100 passes to the reset.

Needs OTA_BUILD_DIR with server-mock/ota-server, agent/ota-agent,
agent/pack/ota-pack, the video-app builds, and Debian's libfaketime."""

import datetime
import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("OTA_SOURCE_DIR", os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SRC, "server-mock", "tests", "e2e"))
sys.path.insert(0, os.path.join(SRC, "agent", "tests", "e2e"))
import otadev  # noqa: E402
from test_server_api import Server  # noqa: E402

FAKETIME = next((p for p in ("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
                             "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
                             "/usr/lib/faketime/libfaketime.so.1") if os.path.exists(p)), None)

T0 = 1_800_000_000_000  # 2027-01-15T08:00:00Z: the server's virtual clock and the device's
STEP_S = 30             # a pass every 30 virtual seconds
HOURS = 2
NEIGHBOUR_AT_S = 600    # the neighbour's burst
PUBLISH_AT_S = 4500     # 2.0.0 appears (minute 75)
LATEST = "/repos/acme/video-app/releases/latest"


def iso(ms):
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def log_lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class Run:
    """One device polling for HOURS virtual hours; what the server saw."""

    def __init__(self, work, srv_extra=(), agent_extra=None, neighbour=True):
        keys = otadev.Keys(work)
        v1 = otadev.make_package(work, "video-app", "1.0.0", "tar.gz")
        v2 = otadev.make_package(work, "video-app-v2", "2.0.0", "tar.gz")
        out = os.path.join(work, "out")
        os.makedirs(out)
        rel1 = otadev.publish(out, "v1", v1, "1.0.0", keys)
        rel2 = otadev.publish(out, "v2", v2, "2.0.0", keys)
        srv_dir = os.path.join(work, "server")
        os.makedirs(srv_dir)
        srv = Server(srv_dir, extra=["--public-key", keys.pub, "--virtual-clock", str(T0),
                                     "--github-rate-limit", "60/h", *srv_extra])
        dev = None
        try:
            st, _, b = srv.admin("POST", "/api/v1/releases",
                                 {"dir": rel1, "id": "v1", "publish": True})
            assert st == 201, b
            dev = otadev.Device(os.path.join(work, "dev"), srv, keys, v1, health_window=1,
                                agent_extra={"source": "github", "repo": "acme/video-app",
                                             **(agent_extra or {})})
            self.poll(srv, dev, work, rel2, neighbour)
            self.status = dev.status()
        finally:
            if dev is not None:
                dev.stop()
            srv.stop()
        lines = [x for x in log_lines(os.path.join(srv_dir, "access.log"))
                 if x["path"] == LATEST]
        self.dev_lines = lines
        self.windows = {}
        for x in lines:
            w = self.windows.setdefault((x["ts_ms"] - T0) // 3_600_000,
                                        {"requests": 0, "refused": 0})
            w["requests"] += 1
            w["refused"] += x["status"] in (401, 403, 429)
        self.summary = ", ".join(f"hour {k}: {w['requests']} requests, {w['refused']} refused"
                                 for k, w in sorted(self.windows.items()))
        print("device:", self.summary)

    def poll(self, srv, dev, work, rel2, neighbour):
        # The agent's service commands (Python's supervisor) run on real time.
        with open(dev.config) as f:
            conf = f.read()
        with open(dev.config, "w") as f:
            f.write(conf.replace(f"= {dev.sup}", f"= env -u LD_PRELOAD {dev.sup}"))
        agent = os.environ.get("OTA_RATELIMIT_AGENT", otadev.agent_bin())
        ft = os.path.join(work, "faketime")
        env = dict(os.environ, LD_PRELOAD=FAKETIME, FAKETIME_TIMESTAMP_FILE=ft,
                   FAKETIME_NO_CACHE="1", FAKETIME_DONT_FAKE_MONOTONIC="1", TZ="UTC",
                   # an ASan agent: libfaketime is preloaded before ASan's runtime
                   ASAN_OPTIONS=":".join(filter(None, [os.environ.get("ASAN_OPTIONS"),
                                                       "verify_asan_link_order=0"])))

        def run_agent(*args):
            return subprocess.run([agent, "--config", dev.config, *args], capture_output=True,
                                  text=True, timeout=120, env=env)

        self.passes = []  # (virtual s, exit code, stderr tail)
        self.waiting_status = None
        for i in range(HOURS * 3600 // STEP_S):
            t_s = i * STEP_S
            now_ms = T0 + t_s * 1000
            if t_s:
                st, _, b = srv.admin("POST", "/api/v1/admin/clock", {"advance_to_ms": now_ms})
                assert st == 200, b
            with open(ft, "w") as f:  # the device's wall clock: the same now (ticking from it)
                f.write("@" + datetime.datetime.fromtimestamp(
                    now_ms / 1000, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"))
            if t_s == NEIGHBOUR_AT_S and neighbour:
                # Another client behind the same address: the window's rest.
                while True:
                    st, h, _ = srv.call("GET", "/repos/other/tool/releases/latest")
                    if h.get("x-ratelimit-remaining") == "0":
                        break
            if t_s == PUBLISH_AT_S:
                st, _, b = srv.admin("POST", "/api/v1/releases",
                                     {"dir": rel2, "id": "v2", "publish": True})
                assert st == 201, b
            r = run_agent("update")
            self.passes.append((t_s, r.returncode, r.stderr[-300:]))
            token = conf.split("github_token = ", 1)[1].split("\n")[0] if "github_token" in conf \
                else None
            assert not token or token not in r.stdout + r.stderr, "the token was logged"
            assert r.returncode in (0, 3), f"pass at {t_s}s: exit {r.returncode}: {r.stderr}"
            if t_s == 1800:  # half an hour in
                self.waiting_status = json.loads(run_agent("status", "--json").stdout)

    def updated(self):
        """2.0.0 runs, and the first request after it appeared was answered."""
        assert self.status["app"]["version"] == "2.0.0", (self.status, self.passes[-5:])
        assert any(h["version"] == "2.0.0" and h["status"] == "success"
                   for h in self.status["history"]), self.status
        got = [x for x in self.dev_lines if x["ts_ms"] >= T0 + PUBLISH_AT_S * 1000]
        assert got and got[0]["status"] == 200, "the first request after the release was refused"


need_faketime = pytest.mark.skipif(FAKETIME is None,
                                   reason="libfaketime is not installed (Debian: faketime)")


@need_faketime
def test_device_honours_the_rate_limit_and_still_updates(tmp_path):
    run = Run(str(tmp_path))
    summary = run.summary
    for k, w in run.windows.items():
        assert w["requests"] <= 60, f"hour {k}: over the limit: {summary}"
        assert w["refused"] <= 1, f"hour {k}: asked again while refused: {summary}"
    # Refused once (the neighbour's burst), then no request until the reset.
    assert run.windows[0]["refused"] == 1, summary
    refused_at = next(x["ts_ms"] for x in run.dev_lines if x["status"] == 403)
    after = [x for x in run.dev_lines if x["ts_ms"] > refused_at]
    assert after and after[0]["ts_ms"] >= T0 + 3_600_000, \
        f"asked at {iso(after[0]['ts_ms'])}, before the reset at {iso(T0 + 3_600_000)}"
    # In the second hour it ran its window dry (Remaining 0) and waited, never refused.
    assert run.windows[1]["requests"] == 60 and run.windows[1]["refused"] == 0, summary
    # While it waits, it says so.
    assert run.waiting_status is not None
    assert run.waiting_status.get("rate_limit", "").startswith(
        f"rate limited until {iso(T0 + 3_600_000)}"), run.waiting_status
    run.updated()


@need_faketime
def test_a_token_raises_the_limit(tmp_path):
    """With `github_token` the face accepts, the device has 5,000 an hour: every
    pass is answered, the neighbour's burst does not touch it."""
    run = Run(str(tmp_path), srv_extra=["--github-token", "tok-device"],
              agent_extra={"github_token": "tok-device"})
    assert all(w["refused"] == 0 for w in run.windows.values()), run.summary
    assert sum(w["requests"] for w in run.windows.values()) == HOURS * 3600 // STEP_S
    assert "rate_limit" not in run.waiting_status
    run.updated()
