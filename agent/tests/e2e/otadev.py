"""Building blocks for driving the real ota-agent on a device tree in a
temporary directory: releases made with make-release + ota-pack, the real
update server (ota-server, on loopback) and a device (app slots, data dir,
supervisor, config).

A device may also have rootfs disks (Rootfs: rootA/rootB image files, a
U-Boot env file read and written with the real libubootenv tools, a booted
file standing for /proc/cmdline) and a Bootloader model with U-Boot's
bootcount semantics that "reboots" it.

Used by the end-to-end tests, by ci/demo (the README's main job) and by the
agent benchmark, so that all three run the same flow.
"""

import gzip
import hashlib
import http.client
import json
import os
import random
import shutil
import signal
import socket
import ssl
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


def padded_binary(workdir, variant, pad):
    """A copy of a video-app build variant with pad bytes of incompressible,
    reproducible filler after its end (the ELF loader maps only what the
    program headers name, so the binary runs as before)."""
    path = os.path.join(workdir, f"{variant}.pad{pad}")
    shutil.copyfile(app_bin(variant), path)
    os.chmod(path, 0o755)
    with open(path, "ab") as f:
        f.write(random.Random(f"{variant}/{pad}").randbytes(pad))
    return path


def make_package(workdir, variant, version, fmt="tar.gz", pad=0):
    """A video-app package (.deb or .tar.gz) of a build variant. The package's
    size follows the build (a Release video-app compresses to ~11 KB, an ASan
    one to ~66 KB): a test that cuts or throttles a download at fixed byte
    counts asks for pad bytes of filler so that its payload is longer than
    those counts in every build."""
    out = os.path.join(workdir, f"{variant}_{version}.{'deb' if fmt == 'deb' else 'tar.gz'}")
    binary_path = padded_binary(workdir, variant, pad) if pad else app_bin(variant)
    run([os.path.join(SRC, "agent", "video-app", "make-release"), "--binary", binary_path,
         "--version", version, "--format", fmt, "--out", out])
    return out


def publish(root, release_id, payload, version, keys, kind="app", fmt=None, extra=(),
            device_types=("rpi3b",), name=None):
    """ota-pack build into root/release_id; returns that directory."""
    out = os.path.join(root, release_id)
    cmd = [pack_bin(), "build", "--key", keys.priv, "--payload", payload, "--kind", kind,
           "--name", name or ("video-app" if kind == "app" else "rootfs"), "--version", version,
           "--out", out]
    for t in device_types:
        cmd += ["--device-type", t]
    if fmt:
        cmd += ["--format", fmt]
    run(cmd + list(extra))
    return out


class Pki:
    """Throwaway X.509 material made with the openssl CLI in dirpath (EC
    P-256, valid 2 days): a CA (self.ca, self.ca_key) named name, the
    client certificates it signs (issue), and a self-signed server
    certificate for 127.0.0.1 (server_cert, as Server's tls)."""

    EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def __init__(self, dirpath, name="device-ca"):
        self.dir = dirpath
        os.makedirs(dirpath, exist_ok=True)
        self.ca, self.ca_key = (os.path.join(dirpath, f"{name}.{x}") for x in ("pem", "key"))
        self.serial = 1
        run(["openssl", "req", "-x509", *self.EC, "-keyout", self.ca_key, "-out", self.ca,
             "-days", "2", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign"])

    def issue(self, cn):
        """A client certificate with subject CN=cn signed by the CA: (cert, key)."""
        base = os.path.join(self.dir, f"{cn}.{os.path.basename(self.ca)[:-4]}")
        key, csr, cert, ext = base + ".key", base + ".csr", base + ".pem", base + ".ext"
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                    "extendedKeyUsage=clientAuth\n")
        run(["openssl", "req", "-new", *self.EC, "-keyout", key, "-out", csr, "-subj", f"/CN={cn}"])
        self.serial += 1
        run(["openssl", "x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key,
             "-set_serial", str(self.serial), "-days", "2", "-extfile", ext, "-out", cert])
        return cert, key

    def server_cert(self):
        """A self-signed certificate for 127.0.0.1: (cert, key)."""
        cert, key = (os.path.join(self.dir, f"server.{x}") for x in ("pem", "key"))
        if not os.path.exists(cert):
            run(["openssl", "req", "-x509", *self.EC, "-keyout", key, "-out", cert, "-days", "2",
                 "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"])
        return cert, key


ADMIN = "admin-secret"  # the admin token of the servers started here
ENROLL = "enroll-me"  # their enrollment token


def server_bin():
    return binary("server-mock", "ota-server")


class Server:
    """The real ota-server (server-mock/) on a free loopback port, its
    database, data and logs in workdir; .url and .enroll_token make it
    usable as Device's server (enrollment by the token ENROLL).

    root, if given, is a directory of release directories as publish()
    writes them: offer() adds root/ID to the server (the admin API's
    "dir" import) the first time it names ID, so a test may add releases at
    any time. What a device is offered is what the server really has: a
    manual rollout of the release to that device (offer()), the server's
    fault plans (faults()), its reports and its request log (reports(),
    downloads())."""

    def __init__(self, root, workdir, extra=(), tls=None, enroll=("--enroll-token", ENROLL)):
        """enroll: how the server takes registrations (docs/protocol.md,
        "Register"): the enrollment token by default, ("--open-enrollment",)
        or () for a server with enrollment closed."""
        self.root = root
        self.enroll = list(enroll)
        self.workdir = workdir
        self.tls = tls  # (cert, key) or None
        self.db = os.path.join(workdir, "ota-server.db")
        self.data = os.path.join(workdir, "data")
        self.access_log = os.path.join(workdir, "access.log")
        self.enroll_token = ENROLL
        self.extra = list(extra)
        self.proc = None
        self.added = {}  # release id -> the release object the server answered
        self.offers = 0
        self.start()

    def binary(self):
        return server_bin()

    def start(self):
        port_file = os.path.join(self.workdir, "server.port")
        if os.path.exists(port_file):
            os.unlink(port_file)
        self.log = open(os.path.join(self.workdir, "server.log"), "a")
        self.proc = subprocess.Popen(
            [self.binary(), "serve", "--port", "0", "--port-file", port_file, "--db", self.db, "--data-dir", self.data,
             "--admin-token", ADMIN, "--max-body", "65536", "--log", self.access_log]
            + self.enroll
            + self.extra + (["--tls-cert", self.tls[0], "--tls-key", self.tls[1]] if self.tls
                            else []), stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 15
        while not os.path.exists(port_file):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"ota-server did not start: see {self.workdir}/server.log")
            time.sleep(0.02)
        with open(port_file) as f:
            self.port = int(f.read().strip())
        self.url = f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.log.close()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def call(self, method, path, body=None, token=None, raw=None, headers=None, timeout=30,
             cert=None):
        """(status, headers dict lower-case, parsed JSON or raw bytes); cert:
        the client certificate to present, (cert, key) (TLS only)."""
        if self.tls:
            ctx = ssl.create_default_context(cafile=self.tls[0])
            if cert:
                ctx.load_cert_chain(cert[0], cert[1])
            conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout, context=ctx)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        try:
            conn.request(method, path, body=data, headers=h)
            r = conn.getresponse()
            payload = r.read()
            hdrs = {k.lower(): v for k, v in r.getheaders()}
        finally:
            conn.close()
        if hdrs.get("content-type", "").startswith("application/json") and payload:
            payload = json.loads(payload)
        return r.status, hdrs, payload

    def admin(self, method, path, body=None, **kw):
        return self.call(method, path, body=body, token=ADMIN, **kw)

    def admin_ok(self, method, path, body=None, expect=(200, 201)):
        """An admin call that must succeed; its JSON answer."""
        st, _, b = self.admin(method, path, body)
        if st not in expect:
            raise RuntimeError(f"ota-server: {method} {path}: {st} {b}")
        return b

    def register(self, device_id, device_type="rpi3b", app="1.0.0", token=ENROLL, **extra):
        """Registers device_id with the enrollment token (a known id: pass
        its current token, or allow_reenroll() it first); its new token."""
        body = {"device_id": device_id, "device_type": device_type,
                "versions": {"app": app, "rootfs": ""}, **extra}
        st, _, b = self.call("POST", "/api/v1/devices/register", body, token=token)
        assert st in (200, 201), b
        return b["token"]

    def allow_reenroll(self, device_id):
        """The admin's approval of one re-enrollment of a known device_id."""
        st, _, b = self.admin("POST", f"/api/v1/devices/{device_id}/reenroll")
        assert st == 200, b

    # ---- releases and offers ----

    def add_release(self, release_id, check=True, publish=True):
        """root/release_id into the server (once), published; "check": false
        stores a release that no honest server would take as it is
        (docs/protocol.md, "Releases"): the agent must refuse it."""
        if release_id not in self.added:
            body = {"dir": os.path.join(self.root, release_id), "id": release_id,
                    "publish": publish}
            if not check:
                body["check"] = False
            self.added[release_id] = self.admin_ok("POST", "/api/v1/releases", body)
        elif publish and not self.added[release_id]["published"]:
            self.added[release_id] = self.admin_ok(
                "POST", f"/api/v1/releases/{release_id}/publish")
        return self.added[release_id]

    def offer(self, release_id, device_id=None, check=True):
        """With device_id: a manual rollout of release_id to that device,
        started (the device is registered first if the server does not know
        it yet, as an operator enrolls a device); every offer is a new
        rollout, so a new update id. Without: the release is published,
        which is what the GitHub face serves."""
        # The rollout exists before the release is published: the server's
        # fallback offer (no rollout at all) never offers anything here.
        self.add_release(release_id, check=check, publish=False)
        if device_id is None:
            return self.add_release(release_id, check=check)
        if self.admin("GET", f"/api/v1/devices/{device_id}")[0] == 404:
            self.register(device_id)
        self.offers += 1
        rid = f"o{self.offers}"
        self.admin_ok("POST", "/api/v1/rollouts",
                      {"id": rid, "release_id": release_id, "strategy": "manual",
                       "devices": [device_id]})
        self.add_release(release_id, check=check)
        for action in ("approve", "start"):
            self.admin_ok("POST", f"/api/v1/rollouts/{rid}/{action}")
        return rid

    # ---- what the server saw ----

    def reports(self, device_id=None):
        """Status reports, oldest first (the admin API's)."""
        out, offset = [], 0
        while True:
            q = f"?limit=1000&offset={offset}" + (f"&device={device_id}" if device_id else "")
            page = self.admin_ok("GET", "/api/v1/reports" + q)
            out += page["reports"]
            offset += len(page["reports"])
            if not page["reports"] or offset >= page["total"]:
                return out

    def final_reports(self, device_id):
        """The device's "success" and "failure" reports, oldest first."""
        return [r for r in self.reports(device_id) if r["status"] != "in_progress"]

    def faults(self, rules, seed=0):
        """Replaces the server's fault plan with these rules ([]: no faults);
        see fault()."""
        if not rules:
            return self.admin_ok("DELETE", "/api/v1/faults")
        return self.admin_ok("PUT", "/api/v1/faults", {"seed": seed, "rules": rules})

    def applied_faults(self):
        return self.admin_ok("GET", "/api/v1/faults/applied")["applied"]

    def requests(self):
        """The server's access log (--log): one dict per answered request, in
        the order they ended; "range"/"if_range" when the request had them."""
        try:
            with open(self.access_log) as f:
                lines = [json.loads(x) for x in f if x.strip()]
        except FileNotFoundError:
            return []
        return [x for x in lines if not x.get("fault")]

    def downloads(self, settle=0.2):
        """The release-file requests of requests() (both faces), each with
        its "range" (None without one). Waits until the log stops growing for
        settle seconds: a request is logged when the server is done with it,
        a moment after the client saw its end."""
        prev = None
        while True:
            cur = [dict(x, range=x.get("range")) for x in self.requests()
                   if x["path"].startswith("/api/v1/releases/") and x["method"] != "POST"
                   or "/releases/download/" in x["path"]]
            if cur == prev:
                return cur
            prev = cur
            time.sleep(settle)


def fault(kind, path=None, count=None, rule_id=None, match=None, **params):
    """One rule of a fault plan (docs/protocol.md, "Fault plans"): kind and
    its keys (after_bytes, bytes_per_s, offset, length, code, delta, ms),
    matching path (a glob) and the rest of match; count None: no limit."""
    m = dict(match or {})
    if path:
        m["path"] = path
    rule = {"id": rule_id or f"{kind}-{fault.n}", "match": m, "fault": {"kind": kind, **params}}
    fault.n += 1
    if count is not None:
        rule["count"] = count
    return rule


fault.n = 1


BROKEN = b"BROKEN"  # an image starting so cannot boot (Bootloader)
ENV_SIZE = 0x4000  # bytes of the U-Boot env, as mkenvimage -s and fw_env.config say


def make_image(workdir, name, size, fmt="raw", broken=False, seed=None):
    """A rootfs image of size random bytes (starting with b"BROKEN" if
    broken: the Bootloader model cannot boot it), as name.img or, gzipped,
    name.img.gz. Returns (path, the raw image bytes)."""
    data = random.Random(seed if seed is not None else name).randbytes(size)
    if broken:
        data = BROKEN + data[len(BROKEN):]
    if fmt == "raw":
        path = os.path.join(workdir, f"{name}.img")
        with open(path, "wb") as f:
            f.write(data)
    elif fmt == "gz":
        path = os.path.join(workdir, f"{name}.img.gz")
        with open(path, "wb") as f:
            f.write(gzip.compress(data, mtime=0))
    else:
        raise ValueError(f"image format {fmt}")
    return path, data


def tree_digest(path):
    """SHA-256 over a whole tree: every name, its type and mode, a symlink's
    target and a file's bytes. Equal digests: nothing under path changed."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            rel = os.path.relpath(full, path)
            h.update(f"{rel}\0{st.st_mode:o}\0".encode())
            if os.path.islink(full):
                h.update(os.readlink(full).encode())
            elif os.path.isfile(full):
                with open(full, "rb") as f:
                    h.update(hashlib.sha256(f.read()).digest())
            h.update(b"\0")
    return h.hexdigest()


class Rootfs:
    """A device's rootfs disks as files in dir: rootA and rootB (part_size
    bytes each; rootA holds a 1.0.0 image, rootB zeros), a U-Boot env made
    by mkenvimage (boot_part=A bootcount=0 bootlimit=3 upgrade_available=0,
    and a bootcmd that no one may drop) with its fw_env.config, the booted
    file ("a" or "b", what /proc/cmdline tells on a real device) and the
    marker file that the agent's reboot_cmd touches."""

    def __init__(self, dir, part_size=8 << 20, bootlimit=3):
        self.dir = dir
        os.makedirs(dir, exist_ok=True)
        self.a = os.path.join(dir, "rootA")
        self.b = os.path.join(dir, "rootB")
        self.env_file = os.path.join(dir, "uboot.env")
        self.env_config = os.path.join(dir, "fw_env.config")
        self.booted_file = os.path.join(dir, "booted")
        self.marker = os.path.join(dir, "reboot-requested")
        image = random.Random("rootA-1.0.0").randbytes(256 << 10)
        with open(self.a, "wb") as f:
            f.write(image)
            f.truncate(part_size)
        with open(self.b, "wb") as f:
            f.truncate(part_size)
        text = os.path.join(dir, "env.txt")
        with open(text, "w") as f:
            f.write(f"boot_part=A\nbootcount=0\nbootlimit={bootlimit}\nupgrade_available=0\n"
                    "bootcmd=run ota_boot\n")
        run(["mkenvimage", "-s", hex(ENV_SIZE), "-o", self.env_file, text])
        with open(self.env_config, "w") as f:
            f.write(f"{self.env_file} 0x0 {hex(ENV_SIZE)}\n")
        self.set_booted("a")

    def env(self):
        """The env as a dict, read with fw_printenv (raises on a bad CRC)."""
        out = run(["fw_printenv", "-c", self.env_config]).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def set_env(self, **values):
        """fw_setenv of several variables at once (one write), then read
        back: libubootenv 0.3.2 takes "name=value" script lines and ignores
        others silently."""
        script = os.path.join(self.dir, "setenv.script")
        with open(script, "w") as f:
            for k, v in values.items():
                f.write(f"{k}={v}\n")
        run(["fw_setenv", "-c", self.env_config, "-s", script])
        env = self.env()
        for k, v in values.items():
            if env.get(k) != str(v):
                raise RuntimeError(f"fw_setenv did not set {k}={v}: {env}")

    def env_bytes(self):
        with open(self.env_file, "rb") as f:
            return f.read()

    def corrupt_env(self, offset=64):
        """Flips one byte of the env's data: its CRC no longer matches."""
        with open(self.env_file, "r+b") as f:
            f.seek(offset)
            b = f.read(1)
            f.seek(offset)
            f.write(bytes([b[0] ^ 0xFF]))

    def booted(self):
        with open(self.booted_file) as f:
            return f.read().strip()

    def set_booted(self, slot):
        with open(self.booted_file, "w") as f:
            f.write(slot + "\n")

    def part(self, slot):
        return self.a if slot.lower() == "a" else self.b

    def read(self, slot, n=None, offset=0):
        with open(self.part(slot), "rb") as f:
            f.seek(offset)
            return f.read() if n is None else f.read(n)

    def digest(self, slot):
        return hashlib.sha256(self.read(slot)).hexdigest()

    def reboot_requested(self):
        return os.path.exists(self.marker)


class Bootloader:
    """U-Boot's bootcount logic on a Rootfs, through fw_printenv/fw_setenv:
    at each boot, if upgrade_available=1 then bootcount += 1, and past
    bootlimit the alternative boot (boot_part = the other slot,
    upgrade_available = 0). A slot whose image starts with b"BROKEN" (or
    that can_boot refuses) does not come up: the watchdog resets the board
    and the loop boots again. The slot that comes up is written to the
    booted file. `log` lists (slot, came_up) per boot."""

    def __init__(self, rootfs, can_boot=None):
        self.rootfs = rootfs
        self.can_boot = can_boot or (lambda slot: rootfs.read(slot, len(BROKEN)) != BROKEN)
        self.log = []

    def boot_once(self):
        """One power-on. Returns (slot, came_up)."""
        env = self.rootfs.env()
        part = env.get("boot_part", "A")
        if env.get("upgrade_available") == "1":
            count = int(env.get("bootcount", "0")) + 1
            changes = {"bootcount": count}
            if count > int(env.get("bootlimit", "3")):
                part = "B" if part == "A" else "A"
                changes.update(boot_part=part, upgrade_available=0)
            self.rootfs.set_env(**changes)
        slot = part.lower()
        up = bool(self.can_boot(slot))
        self.log.append((slot, up))
        if up:
            self.rootfs.set_booted(slot)
        return slot, up

    def boot(self, max_boots=16):
        """Reboots until a slot comes up; returns it. Clears the reboot
        marker (the reboot happened)."""
        if os.path.exists(self.rootfs.marker):
            os.unlink(self.rootfs.marker)
        for _ in range(max_boots):
            slot, up = self.boot_once()
            if up:
                return slot
        raise RuntimeError(f"no slot came up in {max_boots} boots: {self.log}")


def mount_tmpfs(path, size):
    """A tmpfs of size (mount's syntax, e.g. "3m") at path; False if this
    machine does not let us mount (not root, no CAP_SYS_ADMIN)."""
    os.makedirs(path, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path],
                       capture_output=True, text=True)
    return r.returncode == 0


def umount(path):
    if subprocess.run(["umount", path], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", path], capture_output=True)


class Device:
    """A device tree: app/{a,b,current}, data/, the supervisor's state, a config.

    app_root puts the app slots elsewhere (a small tmpfs, say); rootfs=True
    adds rootfs disks (self.rootfs, a Rootfs in disks/) and the [rootfs]
    section, with a reboot_cmd that touches self.rootfs.marker."""

    def __init__(self, workdir, server, keys, initial_package, device_id="dev-0001",
                 health_window=3, health_url=True, transport=None, agent_extra=None,
                 app_root=None, rootfs=False):
        self.dir = workdir
        self.id = device_id
        self.app_root = app_root or os.path.join(workdir, "app")
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
        self.rootfs = None
        if rootfs:
            self.rootfs = Rootfs(os.path.join(workdir, "disks"))
            sections["rootfs"] = {
                "device_a": self.rootfs.a, "device_b": self.rootfs.b,
                "booted_file": self.rootfs.booted_file, "env_config": self.rootfs.env_config,
                "version": "1.0.0",
            }
            sections["service"]["reboot_cmd"] = f"touch {self.rootfs.marker}"
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
