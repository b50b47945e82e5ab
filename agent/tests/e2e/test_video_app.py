"""End-to-end tests of the demo app video-app, its bad builds, make-release
and the plain supervisor (supervisor.py).

Binaries come from $OTA_BUILD_DIR/agent/video-app (default
/work/main/build). Every app listens on --port 0 and reports its port
through --port-file, so tests never clash on ports.
"""

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
BUILD_DIR = os.environ.get("OTA_BUILD_DIR", "/work/main/build")
APP_DIR = os.path.join(BUILD_DIR, "agent", "video-app")
MAKE_RELEASE = os.path.join(SOURCE_DIR, "agent", "video-app", "make-release")
SUPERVISOR = os.path.join(HERE, "supervisor.py")
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
FAULT_SECONDS = float(os.environ.get("VIDEO_APP_FAULT_SECONDS", "3"))


def binary(name):
    path = os.path.join(APP_DIR, name)
    if not os.access(path, os.X_OK):
        pytest.skip(f"{path} not built (cmake --build BUILD --target {name})")
    return path


def wait_port(port_file, proc=None, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(port_file) as f:
                text = f.read().strip()
            if text:
                return int(text)
        except FileNotFoundError:
            pass
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"video-app exited with {proc.returncode} before listening")
        time.sleep(0.02)
    raise AssertionError(f"no port in {port_file} after {timeout} s")


def request(port, path, method="GET", timeout=3.0):
    """(status, headers dict, body bytes)"""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


def get_json(port, path):
    status, headers, body = request(port, path)
    assert headers["content-type"] == "application/json"
    return status, json.loads(body)


def parse_ppm(data):
    """(width, height, pixel bytes) of a binary PPM with maxval 255."""
    fields = []
    pos = 0
    while len(fields) < 4:
        while data[pos:pos + 1].isspace():
            pos += 1
        start = pos
        while not data[pos:pos + 1].isspace():
            pos += 1
        fields.append(data[start:pos])
    pos += 1  # exactly one whitespace byte before the raster
    assert fields[0] == b"P6"
    w, h, maxval = int(fields[1]), int(fields[2]), int(fields[3])
    assert maxval == 255
    pixels = data[pos:]
    assert len(pixels) == w * h * 3
    return w, h, pixels


class App:
    """One video-app process on a free port."""

    def __init__(self, name, tmp_path, env=None, extra=(), cwd=None):
        self.port_file = str(tmp_path / f"{name}.port")
        self.log = open(tmp_path / f"{name}.log", "wb")
        full_env = dict(os.environ)
        full_env.pop("VIDEO_APP_PORT", None)
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [binary(name), "--port", "0", "--port-file", self.port_file, *extra],
            stdout=self.log, stderr=self.log, cwd=str(cwd or tmp_path), env=full_env)
        self.port = None

    def wait_listening(self):
        self.port = wait_port(self.port_file, self.proc)
        return self.port

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.log.close()


@pytest.fixture
def run_app(tmp_path):
    apps = []

    def start(name, **kw):
        app = App(name, tmp_path, **kw)
        apps.append(app)
        return app

    yield start
    for app in apps:
        app.close()


# ---- the good builds ---------------------------------------------------------

def test_v1_health_and_version(run_app):
    app = run_app("video-app")
    port = app.wait_listening()
    assert get_json(port, "/health") == (200, {"status": "ok", "version": "1.0.0"})
    assert get_json(port, "/version") == (200, {"version": "1.0.0", "mode": "color"})


def test_v1_frame_has_colour_and_moves(run_app):
    app = run_app("video-app")
    port = app.wait_listening()
    status, headers, body = request(port, "/frame")
    assert status == 200
    assert headers["content-type"] == "image/x-portable-pixmap"
    assert int(headers["content-length"]) == len(body)
    w, h, px = parse_ppm(body)
    assert (w, h) == (64, 48)
    rgb = [px[i:i + 3] for i in range(0, len(px), 3)]
    assert any(p[0] != p[1] or p[1] != p[2] for p in rgb), "v1 frame has no colour"
    status, _, body5 = request(port, "/frame?n=5")
    assert status == 200 and body5 != body, "frames do not animate"
    assert request(port, "/frame?n=64")[2] == body, "bars scroll with period = width"


@pytest.mark.parametrize("name,version", [("video-app-v2", "2.0.0"), ("video-app-v3", "3.0.0")])
def test_v2_and_later_are_black_and_white(run_app, name, version):
    app = run_app(name)
    port = app.wait_listening()
    assert get_json(port, "/health") == (200, {"status": "ok", "version": version})
    assert get_json(port, "/version") == (200, {"version": version, "mode": "bw"})
    for n in (0, 7):
        status, _, body = request(port, f"/frame?n={n}")
        assert status == 200
        _, _, px = parse_ppm(body)
        for i in range(0, len(px), 3):
            assert px[i] == px[i + 1] == px[i + 2], f"pixel {i // 3} of frame {n} not gray"
        assert len(set(px)) > 2, "gray frame lost its bars"


def test_http_errors_and_head(run_app):
    app = run_app("video-app")
    port = app.wait_listening()
    assert request(port, "/nope")[0] == 404
    assert request(port, "/frame?n=abc")[0] == 400
    assert request(port, "/frame?n=")[0] == 400
    assert request(port, "/frame?n=-1")[0] == 400
    status, headers, _ = request(port, "/health", method="POST")
    assert status == 405 and "GET" in headers["allow"]
    status, headers, body = request(port, "/frame", method="HEAD")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        s.sendall(b"garbage\r\n\r\n")
        assert s.recv(64).startswith(b"HTTP/1.1 400 ")
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        s.sendall(b"GET /" + b"x" * 9000)
        assert s.recv(64).startswith(b"HTTP/1.1 431 ")


def test_slow_clients_do_not_block_others(run_app):
    app = run_app("video-app")
    port = app.wait_listening()
    slow = []
    for _ in range(8):
        s = socket.create_connection(("127.0.0.1", port), timeout=3)
        s.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\n")  # headers not finished
        slow.append(s)
    try:
        t0 = time.monotonic()
        assert get_json(port, "/health")[0] == 200
        assert time.monotonic() - t0 < 1.0
        for s in slow:
            s.sendall(b"\r\n")
        for s in slow:
            data = b""
            while chunk := s.recv(4096):
                data += chunk
            assert data.startswith(b"HTTP/1.1 200 ") and b'"mode":"color"' in data
    finally:
        for s in slow:
            s.close()


def test_port_from_environment(run_app, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path / "env.log", "wb")
    proc = subprocess.Popen([binary("video-app")], stdout=log, stderr=log,
                            env=dict(os.environ, VIDEO_APP_PORT=str(port)))
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                assert get_json(port, "/health")[0] == 200
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
        log.close()
    assert f"listening on 127.0.0.1:{port}" in (tmp_path / "env.log").read_text()


def test_sigterm_exits_cleanly(run_app):
    app = run_app("video-app")
    app.wait_listening()
    app.proc.send_signal(signal.SIGTERM)
    assert app.proc.wait(timeout=3) == 0


def test_bad_arguments(tmp_path):
    exe = binary("video-app")
    assert subprocess.run([exe, "--port", "70000"], capture_output=True).returncode == 2
    assert subprocess.run([exe, "--frobnicate"], capture_output=True).returncode == 2
    out = subprocess.run([exe, "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "1.0.0"


# ---- the bad builds ----------------------------------------------------------

def test_crash_on_start_dies_at_once(run_app):
    app = run_app("video-app-v2-crash-on-start")
    rc = app.proc.wait(timeout=2)
    assert rc != 0
    assert not os.path.exists(app.port_file)


def test_crash_after_dies_within_its_delay(run_app):
    app = run_app("video-app-v2-crash-after")
    t0 = time.monotonic()
    port = app.wait_listening()
    assert get_json(port, "/health") == (200, {"status": "ok", "version": "2.0.0"})
    rc = app.proc.wait(timeout=FAULT_SECONDS + 2)
    assert rc != 0
    assert time.monotonic() - t0 >= FAULT_SECONDS - 0.5


def test_health_500(run_app):
    app = run_app("video-app-v2-health-500")
    port = app.wait_listening()
    assert get_json(port, "/health") == (500, {"status": "error", "version": "2.0.0"})
    assert get_json(port, "/version") == (200, {"version": "2.0.0", "mode": "bw"})


@pytest.mark.parametrize("quirk", [False, True])
def test_health_500_quirk_only_on_a_device_with_the_quirk(run_app, tmp_path, quirk):
    # the device's tree as `ota-sim svc` runs the app: cwd ROOT/run, the quirk in ROOT/etc
    (tmp_path / "dev" / "run").mkdir(parents=True)
    (tmp_path / "dev" / "etc").mkdir()
    (tmp_path / "dev" / "etc" / "video-app-quirk-1.0.0").write_text("another version's\n")
    if quirk:
        (tmp_path / "dev" / "etc" / "video-app-quirk-2.0.0").write_text("")
    app = run_app("video-app-v2-health-500-quirk", cwd=tmp_path / "dev" / "run")
    port = app.wait_listening()
    if quirk:
        assert get_json(port, "/health") == (500, {"status": "error", "version": "2.0.0"})
    else:
        assert get_json(port, "/health") == (200, {"status": "ok", "version": "2.0.0"})
    assert get_json(port, "/version") == (200, {"version": "2.0.0", "mode": "bw"})


def test_hang_stops_answering_but_lives(run_app):
    app = run_app("video-app-v2-hang")
    t0 = time.monotonic()
    port = app.wait_listening()
    assert get_json(port, "/health")[0] == 200
    time.sleep(max(0.0, FAULT_SECONDS + 0.3 - (time.monotonic() - t0)))
    with pytest.raises((socket.timeout, TimeoutError)):
        request(port, "/health", timeout=1.0)
    assert app.proc.poll() is None, "a hung build must stay alive"
    app.proc.send_signal(signal.SIGTERM)
    app.proc.wait(timeout=3)


# ---- make-release ------------------------------------------------------------

def make_release(tmp_path, fmt, version="2.0.0", name="video-app-v2", out=None, env=None):
    out = out or str(tmp_path / f"video-app_{version}.{fmt}")
    subprocess.run([MAKE_RELEASE, "--binary", binary(name), "--version", version,
                    "--format", fmt, "--out", out, "--arch", "amd64"],
                   check=True, capture_output=True, env=dict(os.environ, **(env or {})))
    return out


@pytest.mark.skipif(not shutil.which("dpkg-deb"), reason="dpkg-deb not installed")
def test_make_release_deb(tmp_path):
    deb = make_release(tmp_path, "deb")
    listing = subprocess.run(["dpkg-deb", "-c", deb], check=True, capture_output=True,
                             text=True).stdout
    names = {line.split()[-1] for line in listing.splitlines()}
    assert {"./bin/video-app", "./VERSION", "./share/video-app/README"} <= names
    assert all(n.startswith("./") for n in names)
    fields = {f: subprocess.run(["dpkg-deb", "-f", deb, f], check=True, capture_output=True,
                                text=True).stdout.strip()
              for f in ("Package", "Version", "Architecture", "Maintainer", "Description")}
    assert fields["Package"] == "video-app"
    assert fields["Version"] == "2.0.0"
    assert fields["Architecture"] == "amd64"
    assert fields["Maintainer"] and fields["Description"]
    slot = tmp_path / "slot"
    subprocess.run(["dpkg-deb", "-x", deb, str(slot)], check=True)
    assert (slot / "VERSION").read_text() == "2.0.0\n"
    assert os.access(slot / "bin" / "video-app", os.X_OK)
    out = subprocess.run([str(slot / "bin" / "video-app"), "--version"], capture_output=True,
                         text=True)
    assert out.stdout.strip() == "2.0.0"
    # Reproducible: the same inputs give the same bytes.
    again = make_release(tmp_path, "deb", out=str(tmp_path / "again.deb"))
    assert open(deb, "rb").read() == open(again, "rb").read()


def test_make_release_tar_gz(tmp_path):
    tgz = make_release(tmp_path, "tar.gz", version="3.0.0", name="video-app-v3")
    with tarfile.open(tgz, "r:gz") as tf:
        members = {m.name: m for m in tf.getmembers()}
        assert set(members) == {"bin", "bin/video-app", "VERSION", "share", "share/video-app",
                                "share/video-app/README"}
        assert members["bin/video-app"].mode & 0o111
        assert all(m.uid == 0 and m.gid == 0 for m in members.values())
        assert tf.extractfile("VERSION").read() == b"3.0.0\n"
    again = make_release(tmp_path, "tar.gz", version="3.0.0", name="video-app-v3",
                         out=str(tmp_path / "again.tar.gz"))
    assert open(tgz, "rb").read() == open(again, "rb").read()


def test_make_release_refuses_bad_input(tmp_path):
    exe = binary("video-app")
    out = str(tmp_path / "x.deb")
    for args in (["--version", "v1", "--format", "deb"],
                 ["--version", "1.0 0", "--format", "deb"],
                 ["--version", "1.0.0", "--format", "zip"]):
        r = subprocess.run([MAKE_RELEASE, "--binary", exe, "--out", out, *args],
                           capture_output=True)
        assert r.returncode != 0
    r = subprocess.run([MAKE_RELEASE, "--binary", str(tmp_path / "missing"), "--version",
                        "1.0.0", "--format", "tar.gz", "--out", out], capture_output=True)
    assert r.returncode != 0
    assert os.listdir(tmp_path) == [], "a failed release leaves nothing behind"


# ---- supervisor.py -----------------------------------------------------------

class Supervised:
    def __init__(self, tmp_path):
        self.root = tmp_path / "app"
        self.state = tmp_path / "state"
        self.port_file = tmp_path / "sup.port"
        self.root.mkdir()

    def install(self, slot, name):
        d = self.root / slot / "bin"
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy2(binary(name), d / "video-app")

    def point(self, slot):
        tmp = self.root / "current.tmp"
        os.symlink(slot, tmp)
        os.replace(tmp, self.root / "current")

    def run(self, cmd, settle_ms=None, port_file=True):
        env = dict(os.environ)
        if settle_ms is not None:
            env["SUPERVISOR_SETTLE_MS"] = str(settle_ms)
        pf = ["--port-file", str(self.port_file)] if port_file else []
        return subprocess.run(
            [PYTHON, SUPERVISOR, "--dir", str(self.root), "--state", str(self.state),
             "--port", "0", *pf, cmd],
            capture_output=True, text=True, timeout=60, env=env).returncode

    def install_script(self, slot, text):
        d = self.root / slot / "bin"
        d.mkdir(parents=True, exist_ok=True)
        (d / "video-app").write_text(text)
        (d / "video-app").chmod(0o755)

    def port(self):
        return wait_port(str(self.port_file))

    def pid(self):
        return int((self.state / "app.pid").read_text())


@pytest.fixture
def sup(tmp_path):
    s = Supervised(tmp_path)
    yield s
    s.run("stop")


def test_supervisor_start_restart_stop(sup):
    sup.install("a", "video-app")
    sup.install("b", "video-app-v2")
    sup.point("a")
    assert sup.run("is-active") == 3
    assert sup.run("start") == 0
    assert sup.run("is-active") == 0
    assert get_json(sup.port(), "/version")[1]["version"] == "1.0.0"
    first = sup.pid()
    assert sup.run("start") == 0 and sup.pid() == first, "start is idempotent"

    sup.point("b")
    assert sup.run("restart") == 0
    assert sup.run("is-active") == 0
    assert sup.pid() != first
    assert get_json(sup.port(), "/version")[1] == {"version": "2.0.0", "mode": "bw"}

    assert sup.run("stop") == 0
    assert sup.run("is-active") == 3
    assert sup.run("stop") == 0, "stop is idempotent"
    log = (sup.state / "app.log").read_text()
    assert "video-app 1.0.0 (color) listening" in log and "video-app 2.0.0: stopped" in log


def test_supervisor_sees_bad_builds(sup):
    sup.install("a", "video-app-v2-crash-on-start")
    sup.install("b", "video-app-v2-crash-after")
    sup.point("a")
    assert sup.run("restart") != 0, "a build that dies at start fails restart"
    assert sup.run("is-active") == 3
    sup.point("b")
    assert sup.run("restart") == 0, "a build that crashes later passes restart"
    assert sup.run("is-active") == 0
    deadline = time.monotonic() + FAULT_SECONDS + 2
    while sup.run("is-active") == 0:
        assert time.monotonic() < deadline, "crash-after build still active"
        time.sleep(0.2)


@pytest.mark.parametrize("port_file", [True, False])
def test_supervisor_start_ends_when_the_app_is_ready(sup, port_file):
    # The app's port file is its readiness signal (--port-file, else
    # app.ready in the state dir): start returns then, not after the settle
    # time, which here would take 30 s.
    sup.install("a", "video-app")
    sup.point("a")
    t0 = time.monotonic()
    assert sup.run("start", settle_ms=30000, port_file=port_file) == 0
    assert time.monotonic() - t0 < 15, "start waited for the settle time, not for ready"
    ready = sup.port_file if port_file else sup.state / "app.ready"
    assert int(ready.read_text()) > 0


def test_supervisor_start_without_ready_signal(sup):
    # An app that never writes its port file passes start if it is alive
    # after the settle time, and fails it if it dies before.
    sup.install_script("a", "#!/bin/sh\nexec sleep 30\n")
    sup.install_script("b", "#!/bin/sh\nsleep 0.3; exit 4\n")
    sup.point("a")
    t0 = time.monotonic()
    assert sup.run("start", settle_ms=500) == 0
    assert time.monotonic() - t0 >= 0.5, "start did not wait for the settle time"
    assert sup.run("is-active") == 0
    sup.point("b")
    assert sup.run("restart", settle_ms=3000) == 1, "a death before the settle time fails start"
    assert "died at start: exit status 4" in (sup.state / "app.log").read_text()


def test_supervisor_missing_binary_and_dead_pid(sup):
    sup.root.joinpath("a").mkdir()
    sup.point("a")
    assert sup.run("start") != 0
    sup.state.mkdir(exist_ok=True)
    # A recorded pid now used by another process (recycled) is not active.
    other = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        (sup.state / "app.pid").write_text(f"{other.pid}\n")
        (sup.state / "app.start").write_text("1\n")
        assert sup.run("is-active") == 3
        assert sup.run("stop") == 0
        assert other.poll() is None, "stop killed a process that was not ours"
    finally:
        other.kill()
        other.wait()
