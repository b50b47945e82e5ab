#!/usr/bin/python3
"""A small update server for the agent's tests (Python 3 stdlib only).

A test double, not the real ota-server (server-mock/, in C): it serves the
wire protocol of docs/protocol.md from a directory of releases, keeps its
state in memory, and takes orders from the test through /_test endpoints.

    fakeserver.py --root DIR [--host 127.0.0.1] [--port 0] [--port-file FILE]
                  [--enroll-token T] [--offer RELEASE-ID]
                  [--tls-cert PEM --tls-key PEM]

DIR holds one directory per release, as `ota-pack build --out DIR/<id>`
writes it: manifest.json, manifest.json.sig, the payload, payload.sha256.
Only manifest.json and the file named by its "payload" field are required.
Releases are read on every request, so a test may add them at any time.

The port file is written (atomically) once the socket listens. Nothing is
printed but unexpected server errors.

GitHub-Releases face (no auth):
    GET  /repos/OWNER/REPO/releases/latest     the offered release (see
         /_test/offer without device_id), 404 if none
    GET  /OWNER/REPO/releases/download/ID/NAME 302 to /_assets/ID/NAME, as
         GitHub redirects its assets
    GET|HEAD /_assets/ID/NAME                  a release file (Range, ETag)

Fleet API (docs/protocol.md):
    POST /api/v1/devices/register              Bearer: enrollment token (any
         token is taken when --enroll-token is not given); 201, 401; 200 with a
         new token when the id is registered already (re-enrollment)
    POST /api/v1/devices/ID/checkin            Bearer: device token
    POST /api/v1/devices/ID/status             Bearer: device token; kept in
         memory, duplicates accepted (and marked "duplicate": true)
    GET|HEAD /api/v1/releases/ID/payload       Bearer: any device token;
         also /api/v1/releases/ID/NAME for the other release files
    A device is offered the release of its own offer, else the global one,
    until it has reported "success" or "failure" for that update id.

Test endpoints (loopback clients only, no auth):
    POST /_test/offer   {"release": ID or null, "device_id": opt,
                         "rollout_id": opt (default "t<N>", new per offer)}
    POST /_test/faults  [fault, ...]   replaces the queue ([] clears it)
    GET  /_test/faults  the queue
    POST /_test/down    {"seconds": S}  /api/v1/* answers 503 for S seconds
    POST /_test/reset   {"devices": bool}  forget reports, faults, offers,
                        logs (and devices if asked)
    GET  /_test/reports status reports received, oldest first
    GET  /_test/state   devices, offers, faults, applied faults, downloads
    GET|POST /_test/echo  the request as seen: method, path, headers, body

Download faults apply to GET of a payload (either face). Each request takes
the first queued fault that fits it; "count" (default 1) says for how many
requests a fault holds, 0 or a negative count means forever. Optional "match" (a
substring of the path) or "release" (an id) narrow it. Kinds:
    {"kind": "truncate", "after": N}      close the connection after N body bytes
    {"kind": "ignore_range"}              answer 200 with the whole body
    {"kind": "corrupt", "offset": N}      flip byte N of the payload (default 0)
    {"kind": "status", "code": 503}       answer that status (JSON error body)
    {"kind": "stall", "after": N, "seconds": S}  send N bytes, sleep S (30)
    {"kind": "change_length", "total": T} Content-Range names total T (size+1000)
    {"kind": "garbage_range"}             an unparsable Content-Range
    {"kind": "delay", "seconds": S}       wait S before answering
    {"kind": "throttle", "bytes_per_s": B} send the body at B bytes/s (default 65536)
ignore_range, change_length and garbage_range only fit requests with Range.
"""

import argparse
import email.utils
import hashlib
import ipaddress
import json
import os
import re
import secrets
import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

CHUNK = 64 * 1024
MAX_BODY = 1 << 20
ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
FAULT_KINDS = {
    "truncate", "ignore_range", "corrupt", "status", "stall",
    "change_length", "garbage_range", "delay", "throttle",
}
RANGE_ONLY = {"ignore_range", "change_length", "garbage_range"}
STATUSES = {"in_progress", "success", "failure"}


def now_ms():
    return int(time.time() * 1000)


class HTTPError(Exception):
    def __init__(self, code, detail):
        super().__init__(detail)
        self.code = code
        self.detail = detail


class Release:
    """One release directory; only manifest.json and the payload must exist."""

    def __init__(self, rid, path, text, manifest):
        self.id = rid
        self.dir = path
        self.manifest_text = text
        self.manifest = manifest
        self.payload = manifest["payload"]
        self.version = str(manifest.get("version") or rid)
        try:
            with open(os.path.join(path, "manifest.json.sig"), "rb") as f:
                self.signature = f.read().decode("ascii", "replace").strip()
        except OSError:
            self.signature = ""

    def file(self, name):
        """Path of a file of this release, or None. "payload" is an alias."""
        if name == "payload":
            name = self.payload
        if not ID_RE.fullmatch(name):
            return None
        p = os.path.join(self.dir, name)
        return p if os.path.isfile(p) else None

    def assets(self):
        names = ["manifest.json", "manifest.json.sig", self.payload, self.payload + ".sha256"]
        out = []
        for n in names:
            p = self.file(n)
            if p:
                out.append((n, os.path.getsize(p)))
        return out


def load_release(root, rid):
    if not rid or not ID_RE.fullmatch(rid):
        return None
    d = os.path.join(root, rid)
    try:
        with open(os.path.join(d, "manifest.json"), "rb") as f:
            text = f.read()
        m = json.loads(text)
    except (OSError, ValueError):
        return None
    if not isinstance(m, dict) or not isinstance(m.get("payload"), str):
        return None
    if not ID_RE.fullmatch(m["payload"]):
        return None
    return Release(rid, d, text, m)


class State:
    def __init__(self, root, enroll_token, tls):
        self.lock = threading.Lock()
        self.root = root
        self.enroll_token = enroll_token
        self.tls = tls
        self.devices = {}
        self.offers = {}  # device id ("" = everyone) -> {"release", "rollout_id"}
        self.finished = set()  # (device id, update id) with a final report
        self.reports = []
        self.faults = []
        self.fault_log = []
        self.downloads = []
        self.down_until = 0.0
        self.offer_seq = 0

    def reset(self, devices):
        with self.lock:
            self.offers.clear()
            self.finished.clear()
            self.reports.clear()
            self.faults.clear()
            self.fault_log.clear()
            self.downloads.clear()
            self.down_until = 0.0
            if devices:
                self.devices.clear()

    def take_fault(self, path, release_id, has_range):
        with self.lock:
            for i, f in enumerate(self.faults):
                if f["kind"] in RANGE_ONLY and not has_range:
                    continue
                if "match" in f and str(f["match"]) not in path:
                    continue
                if "release" in f and f["release"] != release_id:
                    continue
                count = int(f.get("count", 1))
                if count > 0:
                    count -= 1
                    if count == 0:
                        del self.faults[i]
                    else:
                        f["count"] = count
                applied = dict(f)
                self.fault_log.append({"path": path, "fault": applied, "ts_ms": now_ms()})
                return applied
        return None


def valid_fault(f):
    if not isinstance(f, dict) or f.get("kind") not in FAULT_KINDS:
        return False
    for key in ("after", "offset", "code", "count", "total", "bytes_per_s"):
        if key in f and (not isinstance(f[key], int) or isinstance(f[key], bool)):
            return False
    if "seconds" in f and not isinstance(f["seconds"], (int, float)):
        return False
    return True


def parse_range(value, total):
    """(start, end) inclusive, "unsat" for 416, None to ignore the header."""
    m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", value)
    if not m:
        return None  # other units, several ranges, junk: answer 200
    a, b = m.groups()
    if a == "" and b == "":
        return None
    if a == "":
        n = int(b)
        if n == 0 or total == 0:
            return "unsat"
        return (max(0, total - n), total - 1)
    start = int(a)
    if start >= total:
        return "unsat"
    end = total - 1 if b == "" else min(int(b), total - 1)
    if end < start:
        return None
    return (start, end)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ota-fakeserver/1"
    timeout = 120

    # ---- plumbing ----

    def log_message(self, fmt, *args):
        pass

    def setup(self):
        super().setup()
        # Headers and body go out in separate writes: no Nagle delay.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()

    @property
    def state(self):
        return self.server.state

    def base_url(self):
        scheme = "https" if self.state.tls else "http"
        host = self.headers.get("Host")
        if not host:
            addr, port = self.server.server_address[:2]
            host = "%s:%d" % (addr, port)
        return "%s://%s" % (scheme, host)

    def bearer(self):
        h = self.headers.get("Authorization", "")
        if h[:7].lower() == "bearer ":
            return h[7:].strip()
        return None

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            data = bytearray()
            while True:
                line = self.rfile.readline(65537)
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    self.close_connection = True
                    raise HTTPError(400, "bad chunked body")
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(data)
                if len(data) + size > MAX_BODY:
                    self.close_connection = True
                    raise HTTPError(413, "body too large")
                data += self.rfile.read(size)
                self.rfile.readline(65537)
        try:
            n = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            raise HTTPError(400, "bad Content-Length")
        if n < 0 or n > MAX_BODY:
            self.close_connection = True
            raise HTTPError(413, "body too large")
        return self.rfile.read(n) if n else b""

    def json_body(self, body):
        try:
            return json.loads(body.decode("utf-8")) if body.strip() else None
        except (UnicodeDecodeError, ValueError):
            raise HTTPError(400, "body is not JSON")

    def send_json(self, code, obj, headers=None):
        data = json.dumps(obj, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def dispatch(self, method):
        try:
            body = self.read_body() if method == "POST" else b""
            path = urlsplit(self.path).path
            parts = [unquote(p) for p in path.split("/")[1:]] or [""]
            self.route(method, path, parts, body)
        except HTTPError as e:
            self.send_json(e.code, {"detail": e.detail})
        except (BrokenPipeError, ConnectionResetError, socket.timeout, ssl.SSLError):
            self.close_connection = True

    def do_GET(self):
        self.dispatch("GET")

    def do_HEAD(self):
        self.dispatch("HEAD")

    def do_POST(self):
        self.dispatch("POST")

    # ---- routing ----

    def route(self, method, path, parts, body):
        n = len(parts)
        if parts[0] == "_test":
            return self.route_test(method, parts, body)
        if parts[0] == "api" and n >= 2 and parts[1] == "v1":
            if time.monotonic() < self.state.down_until:
                raise HTTPError(503, "fleet API down (test)")
            return self.route_fleet(method, parts[2:], body)
        if n == 5 and parts[0] == "repos" and parts[3:] == ["releases", "latest"]:
            self.need(method, "GET")
            return self.github_latest(parts[1], parts[2])
        if n == 6 and parts[2:4] == ["releases", "download"]:
            self.need(method, "GET", "HEAD")
            rel = self.release(parts[4])
            if not rel.file(parts[5]):
                raise HTTPError(404, "no asset %s" % parts[5])
            loc = "%s/_assets/%s/%s" % (self.base_url(), rel.id, parts[5])
            self.send_response(302)
            self.send_header("Location", loc)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if n == 3 and parts[0] == "_assets":
            self.need(method, "GET", "HEAD")
            return self.serve_release_file(self.release(parts[1]), parts[2])
        raise HTTPError(404, "no such endpoint: %s" % path)

    def need(self, method, *allowed):
        if method not in allowed:
            raise HTTPError(405, "method not allowed")

    def release(self, rid):
        rel = load_release(self.state.root, rid)
        if not rel:
            raise HTTPError(404, "no release %s" % rid)
        return rel

    # ---- GitHub face ----

    def github_latest(self, owner, repo):
        with self.state.lock:
            offer = self.state.offers.get("")
        rel = load_release(self.state.root, offer["release"]) if offer else None
        if not rel:
            raise HTTPError(404, "Not Found")
        version = rel.version
        tag = version if version.startswith("v") else "v" + version
        created = rel.manifest.get("created")
        if not isinstance(created, int):
            created = int(os.path.getmtime(os.path.join(rel.dir, "manifest.json")))
        base = self.base_url()
        assets = [
            {
                "name": name,
                "size": size,
                "content_type": "application/octet-stream",
                "browser_download_url": "%s/%s/%s/releases/download/%s/%s"
                % (base, owner, repo, rel.id, name),
            }
            for name, size in rel.assets()
        ]
        self.send_json(200, {
            "tag_name": tag,
            "name": version.lstrip("v"),
            "draft": False,
            "prerelease": False,
            "published_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created)),
            "assets": assets,
        })

    # ---- fleet API ----

    def route_fleet(self, method, parts, body):
        n = len(parts)
        if parts == ["devices", "register"]:
            self.need(method, "POST")
            return self.register(self.json_body(body))
        if n == 3 and parts[0] == "devices" and parts[2] in ("checkin", "status"):
            self.need(method, "POST")
            dev = self.device_auth(parts[1])
            req = self.json_body(body)
            if not isinstance(req, dict):
                raise HTTPError(400, "body must be a JSON object")
            if parts[2] == "checkin":
                return self.checkin(parts[1], dev, req)
            return self.status(parts[1], req)
        if n == 3 and parts[0] == "releases":
            self.need(method, "GET", "HEAD")
            self.any_device_auth()
            return self.serve_release_file(self.release(parts[1]), parts[2])
        raise HTTPError(404, "no such endpoint")

    def register(self, req):
        want = self.state.enroll_token
        got = self.bearer()
        if want is not None and (got is None or not secrets.compare_digest(got, want)):
            raise HTTPError(401, "bad enrollment token")
        if not isinstance(req, dict):
            raise HTTPError(400, "body must be a JSON object")
        did = req.get("device_id") or ""
        if not isinstance(did, str) or (did and not ID_RE.fullmatch(did)):
            raise HTTPError(400, "bad device_id")
        token = secrets.token_urlsafe(24)
        with self.state.lock:
            if not did:
                did = "dev-%04d" % (len(self.state.devices) + 1)
            if did in self.state.devices:
                # Re-enrollment (the device lost its token, e.g. a power cut
                # between our answer and its write): rotate the token.
                self.state.devices[did]["token_sha256"] = hashlib.sha256(
                    token.encode()).hexdigest()
                self.state.devices[did]["reenrolled_ms"] = now_ms()
                return self.send_json(200, {"device_id": did, "token": token})
            self.state.devices[did] = {
                "token_sha256": hashlib.sha256(token.encode()).hexdigest(),
                "device_type": req.get("device_type", ""),
                "group": req.get("group", ""),
                "tags": req.get("tags", []),
                "versions": req.get("versions", {}),
                "slots": {},
                "state": "",
                "registered_ms": now_ms(),
                "checkins": 0,
                "last_checkin_ms": 0,
            }
        self.send_json(201, {"device_id": did, "token": token})

    def token_ok(self, dev):
        got = self.bearer()
        if got is None:
            return False
        h = hashlib.sha256(got.encode()).hexdigest()
        return secrets.compare_digest(h, dev["token_sha256"])

    def device_auth(self, did):
        with self.state.lock:
            dev = self.state.devices.get(did)
        if not dev or not self.token_ok(dev):
            raise HTTPError(401, "unknown device or bad token")
        return dev

    def any_device_auth(self):
        with self.state.lock:
            devs = list(self.state.devices.values())
        if not any(self.token_ok(d) for d in devs):
            raise HTTPError(401, "bad device token")

    def checkin(self, did, dev, req):
        with self.state.lock:
            for key in ("device_type", "group", "state", "versions", "slots"):
                if key in req:
                    dev[key] = req[key]
            dev["checkins"] += 1
            dev["last_checkin_ms"] = now_ms()
            offer = self.state.offers.get(did) or self.state.offers.get("")
            update_id = "%s-%s" % (offer["rollout_id"], did) if offer else ""
            if offer and (did, update_id) in self.state.finished:
                offer = None
        rel = load_release(self.state.root, offer["release"]) if offer else None
        if not rel:
            return self.send_json(200, {"update": None})
        self.send_json(200, {"update": {
            "update_id": update_id,
            "rollout_id": offer["rollout_id"],
            "release_id": rel.id,
            "manifest": rel.manifest_text.decode("utf-8", "replace"),
            "signature": rel.signature,
            "url": "%s/api/v1/releases/%s/payload" % (self.base_url(), rel.id),
        }})

    def status(self, did, req):
        for key in ("update_id", "state", "status"):
            if not isinstance(req.get(key), str):
                raise HTTPError(400, "missing or mistyped field %s" % key)
        if req["status"] not in STATUSES:
            raise HTTPError(400, "bad status %s" % req["status"])
        rec = dict(req)
        rec["device_id"] = did
        with self.state.lock:
            rec["duplicate"] = any(
                {k: v for k, v in r.items() if k not in ("received_ms", "duplicate")} == rec
                for r in self.state.reports)
            rec["received_ms"] = now_ms()
            self.state.reports.append(rec)
            if req["status"] != "in_progress":
                self.state.finished.add((did, req["update_id"]))
        self.send_json(200, {"ok": True})

    # ---- files, with Range and faults ----

    def serve_release_file(self, rel, name):
        path = rel.file(name)
        if not path:
            raise HTTPError(404, "no file %s in release %s" % (name, rel.id))
        is_payload = os.path.basename(path) == rel.payload
        st = os.stat(path)
        total = st.st_size
        etag = '"%x-%x"' % (st.st_size, st.st_mtime_ns)
        lastmod = email.utils.formatdate(st.st_mtime, usegmt=True)
        rng = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        fault = None
        if is_payload and self.command == "GET":
            fault = self.state.take_fault(self.path, rel.id, rng is not None)
        kind = fault["kind"] if fault else None
        log = {"path": self.path, "method": self.command, "range": rng, "if_range": if_range,
               "fault": kind, "status": 0, "sent": 0, "ts_ms": now_ms()}
        with self.state.lock:
            self.state.downloads.append(log)
        common = {"ETag": etag, "Last-Modified": lastmod, "Accept-Ranges": "bytes"}

        if kind == "delay":
            time.sleep(float(fault.get("seconds", 1)))
        if kind == "status":
            code = int(fault.get("code", 503))
            log["status"] = code
            return self.send_json(code, {"detail": "injected fault: status %d" % code}, common)

        start, end, code = 0, total - 1, 200
        if rng is not None and kind != "ignore_range":
            r = parse_range(rng, total)
            if r is not None and if_range is not None and if_range not in (etag, lastmod):
                r = None  # the file changed: whole body
            if r == "unsat":
                log["status"] = 416
                hdrs = dict(common, **{"Content-Range": "bytes */%d" % total})
                return self.send_json(416, {"detail": "range not satisfiable"}, hdrs)
            if r is not None:
                start, end, code = r[0], r[1], 206
        if kind in ("change_length", "garbage_range"):
            code = 206
        length = max(0, end - start + 1)

        self.send_response(code)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        for k, v in common.items():
            self.send_header(k, v)
        if code == 206:
            if kind == "change_length":
                cr = "bytes %d-%d/%d" % (start, end, int(fault.get("total", total + 1000)))
            elif kind == "garbage_range":
                cr = "bytes garbage/??"
            else:
                cr = "bytes %d-%d/%d" % (start, end, total)
            self.send_header("Content-Range", cr)
        self.end_headers()
        log["status"] = code
        if self.command == "HEAD" or length == 0:
            return None
        self.stream(path, start, length, fault, log)
        return None

    def stream(self, path, start, length, fault, log):
        kind = fault["kind"] if fault else None
        with open(path, "rb") as f:
            if kind not in ("truncate", "corrupt", "stall", "throttle"):
                log["sent"] = self.connection.sendfile(f, start, length)
                return
            limit = length
            if kind == "truncate":
                limit = min(length, max(0, int(fault.get("after", 0))))
            stall_at = max(0, int(fault.get("after", 0))) if kind == "stall" else None
            flip = int(fault.get("offset", 0)) if kind == "corrupt" else None
            rate = max(1, int(fault.get("bytes_per_s", 65536))) if kind == "throttle" else None
            f.seek(start)
            sent = 0
            t0 = time.monotonic()
            while sent < limit:
                if rate is not None:
                    ahead = sent / rate - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
                if stall_at is not None and sent == stall_at:
                    time.sleep(float(fault.get("seconds", 30)))
                    stall_at = None
                n = min(CHUNK, limit - sent)
                if rate is not None:
                    n = min(n, max(1, rate // 20))
                if stall_at is not None and sent < stall_at:
                    n = min(n, stall_at - sent)
                buf = f.read(n)
                if not buf:
                    break
                pos = start + sent
                if flip is not None and pos <= flip < pos + len(buf):
                    buf = bytearray(buf)
                    buf[flip - pos] ^= 0xFF
                self.wfile.write(buf)
                sent += len(buf)
                log["sent"] = sent
        if kind == "truncate":
            # Hang up short of Content-Length: the client sees a cut body.
            self.wfile.flush()
            self.close_connection = True

    # ---- test endpoints ----

    def route_test(self, method, parts, body):
        try:
            loopback = ipaddress.ip_address(self.client_address[0].split("%")[0])
            if getattr(loopback, "ipv4_mapped", None):
                loopback = loopback.ipv4_mapped
            if not loopback.is_loopback:
                raise HTTPError(403, "test endpoints are for loopback clients")
        except ValueError:
            raise HTTPError(403, "test endpoints are for loopback clients")
        what = parts[1] if len(parts) == 2 else ""
        st = self.state
        if what == "reports":
            self.need(method, "GET")
            with st.lock:
                reports = list(st.reports)
            return self.send_json(200, reports)
        if what == "state":
            self.need(method, "GET")
            with st.lock:
                doc = json.loads(json.dumps({
                    "devices": {k: {kk: vv for kk, vv in v.items() if kk != "token_sha256"}
                                for k, v in st.devices.items()},
                    "offers": dict(st.offers),
                    "finished": sorted("%s/%s" % p for p in st.finished),
                    "faults": list(st.faults),
                    "fault_log": list(st.fault_log),
                    "downloads": list(st.downloads),
                    "reports": len(st.reports),
                    "down_s": max(0.0, st.down_until - time.monotonic()),
                }))
            return self.send_json(200, doc)
        if what == "faults":
            if method == "GET":
                with st.lock:
                    faults = [dict(f) for f in st.faults]
                return self.send_json(200, faults)
            self.need(method, "POST")
            req = self.json_body(body)
            if isinstance(req, dict):
                req = [req]
            if not isinstance(req, list) or not all(valid_fault(f) for f in req):
                raise HTTPError(400, "faults: a list of {kind: %s, ...}" % sorted(FAULT_KINDS))
            with st.lock:
                st.faults = [dict(f) for f in req]
            return self.send_json(200, {"ok": True, "faults": len(req)})
        if what == "offer":
            self.need(method, "POST")
            req = self.json_body(body)
            if not isinstance(req, dict):
                raise HTTPError(400, "offer: {release, device_id?, rollout_id?}")
            rid = req.get("release")
            did = req.get("device_id") or ""
            if not isinstance(did, str):
                raise HTTPError(400, "bad device_id")
            if rid is None or rid == "":
                with st.lock:
                    st.offers.pop(did, None)
                return self.send_json(200, {"ok": True, "release": None})
            if not isinstance(rid, str) or not load_release(st.root, rid):
                raise HTTPError(404, "no release %s" % rid)
            with st.lock:
                st.offer_seq += 1
                rollout = req.get("rollout_id") or "t%d" % st.offer_seq
                if not isinstance(rollout, str) or not ID_RE.fullmatch(rollout):
                    raise HTTPError(400, "bad rollout_id")
                st.offers[did] = {"release": rid, "rollout_id": rollout}
                # Offering again makes the update new for every device.
                st.finished = {p for p in st.finished if not p[1].startswith(rollout + "-")}
            return self.send_json(200, {"ok": True, "release": rid, "rollout_id": rollout})
        if what == "down":
            self.need(method, "POST")
            req = self.json_body(body)
            secs = req.get("seconds") if isinstance(req, dict) else None
            if not isinstance(secs, (int, float)) or isinstance(secs, bool) or secs < 0:
                raise HTTPError(400, "down: {seconds: S}")
            with st.lock:
                st.down_until = time.monotonic() + secs
            return self.send_json(200, {"ok": True})
        if what == "echo":
            return self.send_json(200, {
                "method": method,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode("utf-8", "replace"),
            })
        if what == "reset":
            self.need(method, "POST")
            req = self.json_body(body)
            st.reset(bool(req.get("devices")) if isinstance(req, dict) else False)
            return self.send_json(200, {"ok": True})
        raise HTTPError(404, "no such test endpoint")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, socket.timeout, ssl.SSLError, TimeoutError)):
            return  # clients that hang up are part of the tests
        super().handle_error(request, client_address)


def main():
    ap = argparse.ArgumentParser(description="test double of the OTA update server")
    ap.add_argument("--root", required=True, help="directory of release directories")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", help="written with the port once listening")
    ap.add_argument("--enroll-token", help="registration token (default: take any)")
    ap.add_argument("--offer", help="release id offered from the start")
    ap.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM)")
    ap.add_argument("--tls-key", help="private key of --tls-cert (PEM)")
    args = ap.parse_args()

    if ":" in args.host:
        Server.address_family = socket.AF_INET6
    srv = Server((args.host, args.port), Handler)
    tls = bool(args.tls_cert)
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        # Handshakes happen in the handler threads, not in accept().
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True,
                                     do_handshake_on_connect=False)
    srv.state = State(os.path.abspath(args.root), args.enroll_token, tls)
    if args.offer:
        if not load_release(srv.state.root, args.offer):
            sys.stderr.write("fakeserver: no release %s in %s\n" % (args.offer, args.root))
            return 2
        srv.state.offer_seq = 1
        srv.state.offers[""] = {"release": args.offer, "rollout_id": "t1"}
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % srv.server_address[1])
        os.rename(tmp, args.port_file)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
