"""Building blocks for driving the real ota-agent on a device tree in a
temporary directory: releases made with make-release + ota-pack, the test
server (fakeserver.py), and a device (app slots, data dir, supervisor, config).

Used by the end-to-end tests, by ci/demo (the README's main job) and by the
agent benchmark, so that all three run the same flow.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("OTA_SOURCE_DIR", os.path.abspath(os.path.join(HERE, "..", "..", "..")))
BUILD = os.environ.get("OTA_BUILD_DIR", os.path.join(SRC, "build"))
PY = "/usr/bin/python3"


def binary(*parts):
    path = os.path.join(BUILD, *parts)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is not built (OTA_BUILD_DIR={BUILD})")
    return path


def agent_bin():
    return binary("agent", "ota-agent")


def pack_bin():
    return binary("agent", "pack", "ota-pack")


def app_bin(variant="video-app"):
    return binary("agent", "video-app", variant)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, **kw):
    kw.setdefault("check", True)
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    return subprocess.run(cmd, **kw)


class Keys:
    def __init__(self, workdir):
        self.priv = os.path.join(workdir, "release.key")
        self.pub = os.path.join(workdir, "release.pub")
        if not os.path.exists(self.pub):
            run([pack_bin(), "keygen", "--private", self.priv, "--public", self.pub])


def make_package(workdir, variant, version, fmt="tar.gz"):
    """A video-app package (.deb or .tar.gz) of a build variant."""
    out = os.path.join(workdir, f"{variant}_{version}.{'deb' if fmt == 'deb' else 'tar.gz'}")
    run([os.path.join(SRC, "agent", "video-app", "make-release"), "--binary", app_bin(variant),
         "--version", version, "--format", fmt, "--out", out])
    return out


def publish(root, release_id, payload, version, keys, kind="app", fmt=None, extra=()):
    """ota-pack build into root/release_id; returns that directory."""
    out = os.path.join(root, release_id)
    cmd = [pack_bin(), "build", "--key", keys.priv, "--payload", payload, "--kind", kind,
           "--name", "video-app" if kind == "app" else "rootfs", "--version", version,
           "--device-type", "rpi3b", "--out", out]
    if fmt:
        cmd += ["--format", fmt]
    run(cmd + list(extra))
    return out


class Server:
    """fakeserver.py on a free loopback port."""

    def __init__(self, root, workdir, enroll_token="enroll-me"):
        self.root = root
        port_file = os.path.join(workdir, "server.port")
        if os.path.exists(port_file):
            os.unlink(port_file)
        self.log = open(os.path.join(workdir, "server.log"), "w")
        self.proc = subprocess.Popen(
            [PY, os.path.join(HERE, "fakeserver.py"), "--root", root, "--port", "0",
             "--port-file", port_file, "--enroll-token", enroll_token],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 10
        while not os.path.exists(port_file):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("fakeserver did not start")
            time.sleep(0.02)
        with open(port_file) as f:
            self.port = int(f.read().strip())
        self.url = f"http://127.0.0.1:{self.port}"
        self.enroll_token = enroll_token

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            raw = r.read()
        return json.loads(raw) if raw else None

    def offer(self, release_id, device_id=None):
        body = {"release": release_id}
        if device_id:
            body["device_id"] = device_id
        return self.call("POST", "/_test/offer", body)

    def faults(self, faults):
        return self.call("POST", "/_test/faults", faults)

    def reports(self, device_id=None):
        reps = self.call("GET", "/_test/reports")
        if device_id:
            reps = [r for r in reps if r.get("device_id") == device_id]
        return reps

    def state(self):
        return self.call("GET", "/_test/state")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class Device:
    """A device tree: app/{a,b,current}, data/, the supervisor's state, a config."""

    def __init__(self, workdir, server, keys, initial_package, device_id="dev-0001",
                 health_window=3, health_url=True, transport=None, agent_extra=None):
        self.dir = workdir
        self.id = device_id
        self.app_root = os.path.join(workdir, "app")
        self.data = os.path.join(workdir, "data")
        self.sup_state = os.path.join(workdir, "supervisor")
        for d in (self.app_root, self.data, self.sup_state):
            os.makedirs(d, exist_ok=True)
        self.app_port = free_port()
        slot_a = os.path.join(self.app_root, "a")
        os.makedirs(slot_a, exist_ok=True)
        with tarfile.open(initial_package) as t:
            t.extractall(slot_a)
        if not os.path.islink(os.path.join(self.app_root, "current")):
            os.symlink("a", os.path.join(self.app_root, "current"))
        sup = (f"{PY} {os.path.join(HERE, 'supervisor.py')} --dir {self.app_root} "
               f"--state {self.sup_state} --port {self.app_port}")
        self.sup = sup
        self.config = os.path.join(workdir, "ota-agent.conf")
        agent = {
            "source": "fleet", "server": server.url, "enroll_token": server.enroll_token,
            "device_id": device_id, "device_type": "rpi3b", "public_key": keys.pub,
            "database": os.path.join(self.data, "agent.db"), "max_attempts": "5",
            "backoff_base_ms": "200", "backoff_max_ms": "2000",
        }
        agent.update(agent_extra or {})
        sections = {
            "agent": agent,
            "transport": {"connect_timeout": "5", "low_speed_time": "10", **(transport or {})},
            "app": {"root": self.app_root},
            "download": {"dir": os.path.join(self.data, "download")},
            "health": {"window": str(health_window), "interval_ms": "300"},
            "service": {"kind": "command", "restart_cmd": f"{sup} restart",
                        "is_active_cmd": f"{sup} is-active", "reboot_cmd": "true"},
        }
        if health_url:
            sections["health"]["url"] = f"http://127.0.0.1:{self.app_port}/health"
        with open(self.config, "w") as f:
            for name, keys_ in sections.items():
                f.write(f"[{name}]\n")
                for k, v in keys_.items():
                    f.write(f"{k} = {v}\n")
        subprocess.run(sup.split() + ["start"], check=True)

    def agent(self, *args, timeout=120, **kw):
        return subprocess.run([agent_bin(), "--config", self.config, *args], capture_output=True,
                              text=True, timeout=timeout, **kw)

    def spawn(self, *args):
        """ota-agent as a child whose stderr (state lines) can be followed."""
        return subprocess.Popen([agent_bin(), "--config", self.config, *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def status(self):
        r = self.agent("status", "--json")
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    def current(self):
        return os.readlink(os.path.join(self.app_root, "current"))

    def app_get(self, path):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.app_port}{path}", timeout=5) as r:
            return r.status, r.read()

    def app_version(self):
        _, body = self.app_get("/version")
        return json.loads(body)

    def stop(self):
        subprocess.run(self.sup.split() + ["stop"], check=False)


def state_lines(stderr_text):
    """The OTA-STATE lines of an agent's stderr, as dicts."""
    out = []
    for line in stderr_text.splitlines():
        if line.startswith("OTA-STATE "):
            out.append(json.loads(line[len("OTA-STATE "):]))
    return out


def kill_at_state(proc, state, timeout=60):
    """Follows proc's state lines; SIGKILLs it right after it enters state.
    Returns the lines seen (dicts), the last one being the kill point, or
    None if the agent ended first."""
    seen = []
    deadline = time.time() + timeout
    for line in proc.stderr:
        if line.startswith("OTA-STATE "):
            ev = json.loads(line[len("OTA-STATE "):])
            seen.append(ev)
            if ev["to"] == state:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return seen
        if time.time() > deadline:
            break
    proc.wait()
    return None


def rmtree(path):
    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    sys.exit("otadev is a library")
