"""GET /metrics of ota-server over real HTTP: the Prometheus exposition
after registrations, check-ins in several agent states and versions, a
rollout with successes, a failure and devices in flight, a fault plan that
fires and requests of every class. `promtool check metrics` (Debian package
prometheus) must accept it without a lint warning; every figure is checked
against the JSON admin API (stats, rollout objects, fault plan, applied
faults) and the request counters against the access log. The example
Grafana dashboard may only query families the server exports.

Needs OTA_BUILD_DIR like test_server_api.py (whose helpers it reuses)."""

import hashlib
import json
from collections import Counter
import os
import re
import shutil
import sqlite3
import subprocess
import threading
import time

import pytest

from test_server_api import ADMIN, Server  # noqa: F401
import otadev  # noqa: E402  (test_server_api put it on sys.path)

HERE = os.path.dirname(os.path.abspath(__file__))
MONITORING = os.path.join(HERE, "..", "..", "monitoring")
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    not PROMTOOL, reason="promtool missing: Debian package prometheus (ci/install-deps)")
LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


def parse(text):
    """{family: {"type", "help", "samples": {(name, frozenset(labels)): value}}}."""
    fams, cur = {}, None
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, help_ = line[7:].split(" ", 1)
            cur = fams.setdefault(name, {"samples": {}})
            cur["help"] = help_
        elif line.startswith("# TYPE "):
            name, typ = line[7:].split(" ", 1)
            fams.setdefault(name, {"samples": {}})["type"] = typ
            cur = fams[name]
        elif line and not line.startswith("#"):
            m = LINE.match(line)
            assert m, f"bad sample line: {line!r}"
            name, labels, value = m.groups()
            lab = {}
            rest = labels or ""
            while rest:
                lm = LABEL.match(rest)
                assert lm, f"bad labels: {line!r}"
                lab[lm.group(1)] = re.sub(r'\\(.)', lambda x: {"n": "\n"}.get(x.group(1),
                                                                             x.group(1)),
                                          lm.group(2))
                rest = rest[lm.end():]
            fam = cur
            assert fam is not None and (name == list(fams)[-1] or name.startswith(
                list(fams)[-1] + "_")), f"sample {name} outside its family"
            key = (name, frozenset(lab.items()))
            assert key not in fam["samples"], f"duplicate sample {line!r}"
            fam["samples"][key] = float(value)
    return fams


def samples(fams, name, family=None):
    """[(labels dict, value)] of the samples called name."""
    fam = fams[family or name]
    return [(dict(k[1]), v) for k, v in fam["samples"].items() if k[0] == name]


def value(fams, name, family=None, **labels):
    hits = [v for lab, v in samples(fams, name, family) if lab == labels]
    assert len(hits) == 1, (name, labels, samples(fams, name, family))
    return hits[0]


def by(fams, name, key, **fixed):
    """{label key's value: sample value} over the samples that have the fixed labels."""
    return {lab[key]: v for lab, v in samples(fams, name)
            if all(lab.get(k) == x for k, x in fixed.items())}


@pytest.fixture(scope="module")
def mworld(tmp_path_factory):
    work = str(tmp_path_factory.mktemp("met"))
    keys = otadev.Keys(work)
    img, _ = otadev.make_image(work, "img", 64 << 10, seed=4)
    out = os.path.join(work, "out")
    os.makedirs(out)
    rel_v2 = otadev.publish(out, "v2", img, "2.0.0", keys, kind="rootfs", fmt="raw",
                            device_types=("rpi3b", "rpi4"))
    srv_dir = os.path.join(work, "server")
    os.makedirs(srv_dir)
    srv = Server(srv_dir, extra=["--public-key", keys.pub])
    st, _, b = srv.admin("POST", "/api/v1/releases", {"dir": rel_v2, "id": "v2", "publish": True})
    assert st == 201, b
    yield {"srv": srv, "work": work, "access_log": os.path.join(srv_dir, "access.log")}
    srv.stop()


def checkin(srv, dev, tok, state="IDLE", app="1.0.0", expect=200):
    st, _, b = srv.call("POST", f"/api/v1/devices/{dev}/checkin",
                        {"state": state, "versions": {"app": app, "rootfs": "1.0.0"}},
                        token=tok)
    assert st == expect, b
    return b


def report(srv, dev, tok, rid, status, state):
    st, _, b = srv.call("POST", f"/api/v1/devices/{dev}/status",
                        {"update_id": f"{rid}-{dev}", "rollout_id": rid, "state": state,
                         "status": status, "ts": int(time.time() * 1000)}, token=tok)
    assert st == 200, b


def scrape(srv, token=ADMIN):
    return srv.call("GET", "/metrics", token=token)


def quiesce(path, settle=0.3):
    """Waits until the access log stops growing (every request completed)."""
    size = -1
    while True:
        time.sleep(settle)
        now = os.path.getsize(path)
        if now == size:
            return
        size = now


def fleet_activity(srv):
    """A fleet in several states: 8 devices, a rollout over 6 of them with
    2 successes, 1 failure and offers in flight, a fault that fires twice,
    downloads, 404s and refused calls."""
    toks = {f"m-{i}": srv.register(f"m-{i}", group="g-main" if i < 6 else "g-side",
                                   device_type="rpi4" if i % 2 else "rpi3b")
            for i in range(8)}
    states = {d: ["IDLE", "DOWNLOADING", "IDLE", "REBOOTING"][i % 4] for i, d in enumerate(toks)}
    for i, (d, t) in enumerate(toks.items()):
        checkin(srv, d, t, state=states[d], app="0.9.0" if i >= 6 else "1.0.0")
    st, _, r = srv.admin("POST", "/api/v1/rollouts",
                         {"id": "mr", "release_id": "v2", "strategy": "immediate",
                          "filters": {"group": "g-main"},
                          "stages": [{"percent": 100, "failure_threshold": 50}]})
    assert st == 201, r
    for a in ("approve", "start"):
        st, _, b = srv.admin("POST", f"/api/v1/rollouts/mr/{a}")
        assert st == 200, b
    offered = []
    for d in list(toks)[:5]:
        u = checkin(srv, d, toks[d], state=states[d])["update"]
        assert u and u["rollout_id"] == "mr", u
        offered.append(d)
    report(srv, offered[0], toks[offered[0]], "mr", "in_progress", "INSTALLING")
    report(srv, offered[0], toks[offered[0]], "mr", "success", "COMMITTED")
    report(srv, offered[1], toks[offered[1]], "mr", "success", "COMMITTED")
    report(srv, offered[2], toks[offered[2]], "mr", "failure", "FAILED")
    report(srv, offered[3], toks[offered[3]], "mr", "in_progress", "DOWNLOADING")
    # a fault plan: m-7's check-ins get 503 twice; a rule that never fires
    plan = {"seed": 1, "rules": [
        {"id": "busy-m7", "match": {"path": "/api/v1/devices/m-7/checkin"},
         "fault": {"kind": "status", "code": 503}, "count": 2},
        {"id": "never", "match": {"path": "/nowhere-at-all"}, "fault": {"kind": "reset"}}]}
    st, _, b = srv.admin("PUT", "/api/v1/faults", plan)
    assert st == 200, b
    for expect in (503, 503, 200):
        checkin(srv, "m-7", toks["m-7"], state=states["m-7"], app="0.9.0", expect=expect)
    # downloads, a 404, refused calls
    st, _, _ = srv.call("GET", "/api/v1/releases/v2/manifest.json", token=toks["m-0"])
    assert st == 200
    st, _, _ = srv.call("GET", "/nowhere")
    assert st == 404
    st, _, _ = srv.call("POST", "/api/v1/devices/m-0/checkin", {}, token="wrong")
    assert st == 401
    st, _, _ = srv.call("GET", "/repos/acme/app/releases")
    assert st == 200
    return toks


def test_metrics_need_the_admin_token_and_are_not_faulted(mworld):
    srv = mworld["srv"]
    st, h, b = scrape(srv, token=None)
    assert st == 401 and h.get("www-authenticate") == "Bearer" and b["detail"]
    st, _, _ = scrape(srv, token="not-the-admin-token")
    assert st == 401
    st, _, b = srv.call("POST", "/metrics", token=ADMIN)
    assert st == 405
    st, h, b = srv.call("HEAD", "/metrics", token=ADMIN)
    assert st == 200 and b == b"" and h["content-type"].startswith("text/plain")
    st, _, _ = srv.call("GET", "/metrics/x", token=ADMIN)
    assert st == 404
    # a plan matching every path leaves /metrics alone, as it does the admin API
    st, _, _ = srv.admin("PUT", "/api/v1/faults",
                         {"rules": [{"id": "all", "fault": {"kind": "status", "code": 500}}]})
    assert st == 200
    try:
        st, h, body = scrape(srv)
        assert st == 200 and h["content-type"].startswith("text/plain; version=0.0.4")
        assert isinstance(body, bytes) and b"ota_server_build_info" in body
    finally:
        st, _, _ = srv.admin("DELETE", "/api/v1/faults")
        assert st == 200


@needs_promtool
def test_exposition_passes_promtool_and_agrees_with_the_json_api(mworld):
    srv = mworld["srv"]
    fleet_activity(srv)
    quiesce(mworld["access_log"])
    st, h, body = scrape(srv)
    assert st == 200
    text, scrape_id = body.decode(), h["x-request-id"]
    # the JSON API right after (nothing else talks to the server meanwhile)
    st, _, stats = srv.admin("GET", "/api/v1/stats")
    assert st == 200
    st, _, ro = srv.admin("GET", "/api/v1/rollouts/mr")
    assert st == 200
    st, _, plan = srv.admin("GET", "/api/v1/faults")
    assert st == 200
    st, _, applied = srv.admin("GET", "/api/v1/faults/applied")
    assert st == 200

    # promtool: no errors, no lint warnings
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), \
        (r.returncode, r.stdout, r.stderr)

    fams = parse(text)
    for name, fam in fams.items():
        assert name.startswith("ota_server_") and fam.get("type") and fam.get("help"), name

    # fleet: GET /api/v1/stats
    d = stats["devices"]
    assert value(fams, "ota_server_devices") == d["total"] == 8
    assert by(fams, "ota_server_devices_by_state", "state") == d["by_state"]
    assert d["by_state"] == {"IDLE": 4, "DOWNLOADING": 2, "REBOOTING": 2}
    for kind in ("app", "rootfs"):
        assert by(fams, "ota_server_devices_by_version", "version", kind=kind) == \
            d["by_version"][kind], kind
    assert d["by_version"]["app"] == {"1.0.0": 6, "0.9.0": 2}
    assert by(fams, "ota_server_devices_by_type", "type") == d["by_type"]
    assert by(fams, "ota_server_devices_by_group", "group") == d["by_group"]
    assert by(fams, "ota_server_rollouts", "state") == stats["rollouts"]["by_state"]
    # and the stats agree with the devices themselves
    st, _, devs = srv.admin("GET", "/api/v1/devices?limit=1000")
    assert st == 200 and devs["total"] == 8
    for key, get in (("by_type", lambda x: x["device_type"]), ("by_group", lambda x: x["group"]),
                     ("by_state", lambda x: x["state"])):
        assert d[key] == dict(Counter(get(x) for x in devs["devices"])), key
    for kind in ("app", "rootfs"):
        assert d["by_version"][kind] == dict(Counter(x["versions"].get(kind, "")
                                                     for x in devs["devices"])), kind
    assert stats["rollouts"]["by_state"]["running"] == 1

    # the rollout: its object's status and metrics
    m = ro["metrics"]
    assert value(fams, "ota_server_rollout_info", rollout="mr", release="v2",
                 strategy="immediate", state=ro["status"]["state"]) == 1
    assert value(fams, "ota_server_rollout_stage", rollout="mr") == ro["status"]["stage"]
    assert by(fams, "ota_server_rollout_devices", "state", rollout="mr") == m["by_state"]
    assert m["by_state"]["success"] == 2 and m["by_state"]["failure"] == 1
    assert m["by_state"]["offered"] + m["by_state"]["in_progress"] == 2
    assert value(fams, "ota_server_rollout_selected_devices", rollout="mr") == m["selected"]
    assert value(fams, "ota_server_rollout_progress_ratio", rollout="mr") == \
        pytest.approx(m["progress"], abs=1e-12)
    assert value(fams, "ota_server_rollout_success_ratio", rollout="mr") == \
        pytest.approx(m["success_rate"], abs=1e-12)
    assert value(fams, "ota_server_rollout_failure_ratio", rollout="mr") == \
        pytest.approx(m["failure_rate"], abs=1e-12)
    assert m["failure_rate"] == pytest.approx(1 / 3)
    for k, stg in enumerate(m["stages"]):
        for key in ("pending", "in_flight", "success", "failed", "skipped"):
            assert value(fams, "ota_server_rollout_stage_devices", rollout="mr", stage=str(k),
                         state=key) == stg[key], (k, key)
    dur, fam = m["duration_ms"], "ota_server_rollout_update_duration_seconds"
    assert value(fams, fam, rollout="mr", quantile="0.5") == pytest.approx(dur["p50"] / 1000)
    assert value(fams, fam, rollout="mr", quantile="0.95") == pytest.approx(dur["p95"] / 1000)
    assert value(fams, fam + "_count", fam, rollout="mr") == dur["n"] == 2
    assert value(fams, fam + "_sum", fam, rollout="mr") == \
        pytest.approx(dur["mean"] * dur["n"] / 1000)

    # faults: the running plan and the log's total
    rules = {x["id"]: x for x in plan["rules"]}
    assert value(fams, "ota_server_fault_rules") == len(rules) == 2
    for rid, rule in rules.items():
        kind = rule["fault"]["kind"]
        assert value(fams, "ota_server_fault_rule_matched_total", rule=rid, kind=kind) == \
            rule["matched"], rid
        assert value(fams, "ota_server_fault_rule_applied_total", rule=rid, kind=kind) == \
            rule["applied"], rid
    assert rules["busy-m7"]["applied"] == 2 and rules["never"]["applied"] == 0
    assert value(fams, "ota_server_faults_applied_total") == applied["total"] >= 2

    # requests: the access log's lines of the requests that came before the
    # scrape (ids are numbered on arrival; all had completed: quiesce)
    scrape_seq = int(scrape_id.rsplit("-", 1)[1])
    with open(mworld["access_log"]) as f:
        log = [json.loads(x) for x in f if x.strip()]
    log = [x for x in log if not x.get("fault") and int(x["id"].rsplit("-", 1)[1]) < scrape_seq]
    want = {}
    for x in log:
        key = (route_class(x["method"], x["path"]), code_class(x["status"]))
        want.setdefault(key, []).append(x["ms"])
    got = {(lab["route"], lab["code"]): v
           for lab, v in samples(fams, "ota_server_http_requests_total")}
    assert got == {k: len(v) for k, v in want.items()}
    for route in ("register", "checkin", "status", "download", "admin", "github", "other",
                  "metrics"):
        assert any(k[0] == route for k in got), route
    assert got[("checkin", "5xx")] == 2 and got[("other", "4xx")] >= 1
    hist = "ota_server_http_request_duration_seconds"
    for (route, code), ms in want.items():
        lab = {"route": route, "code": code}
        assert value(fams, hist + "_count", hist, **lab) == len(ms)
        total_s = value(fams, hist + "_sum", hist, **lab)
        # the log's ms are whole milliseconds of the same time
        assert sum(ms) / 1000 - 1e-9 <= total_s <= (sum(ms) + len(ms)) / 1000 + 1e-9, lab
        buckets = sorted((float(b["le"]), v) for b, v in samples(fams, hist + "_bucket", hist)
                         if b["route"] == route and b["code"] == code)
        assert buckets[-1] == (float("inf"), len(ms))
        assert [v for _, v in buckets] == sorted(v for _, v in buckets)
        for le, v in buckets[:-1]:
            le_ms = le * 1000
            assert sum(1 for x in ms if x + 1 <= le_ms) <= v <= sum(1 for x in ms if x <= le_ms), \
                (lab, le, v, ms)


def route_class(method, path):
    """The route classes of docs/protocol.md, "Prometheus metrics"."""
    seg = path.lstrip("/").split("/")
    n = len(seg)
    if seg[:2] == ["api", "v1"]:
        if n == 4 and seg[2:4] == ["devices", "register"]:
            return "register"
        if n == 5 and seg[2] == "devices" and seg[4] in ("checkin", "status"):
            return seg[4]
        if n == 5 and seg[2] == "releases" and method in ("GET", "HEAD"):
            return "download"
        if (n == 3 and seg[2] == "events") or (n == 5 and seg[2] == "rollouts"
                                                and seg[4] == "events"):
            return "events"
        return "admin"
    if n >= 4 and seg[1:3] == ["controller", "v1"]:
        return "ddi"
    if seg[0] == "repos" or (n > 3 and seg[2:4] == ["releases", "download"]):
        return "github"
    if seg == ["metrics"]:
        return "metrics"
    return "other"


def code_class(status):
    return f"{status // 100}xx" if 100 <= status <= 599 else "none"


def test_a_label_keeps_its_50_largest_values(tmp_path):
    srv = Server(str(tmp_path))
    try:
        for i in range(55):
            srv.register(f"t-{i:02d}", device_type=f"type-{i:02d}")
        srv.register("t-99", device_type="type-00")
        st, _, body = scrape(srv)
        assert st == 200
        got = by(parse(body.decode()), "ota_server_devices_by_type", "type")
        assert len(got) == 50 and got["type-00"] == 2
        # 49 named (type-00 first, then the others by name), the other 6 summed
        assert got["(other)"] == 6 and sum(got.values()) == 56
        assert "type-48" in got and "type-49" not in got
    finally:
        srv.stop()


def fill_devices(db_path, n):
    """n devices written straight into the server's schema (the server is
    stopped): registering them over HTTP would take minutes."""
    db = sqlite3.connect(db_path)
    db.executemany("INSERT INTO devices(id, token_sha256, type, grp, versions, state,"
                   " registered_ms) VALUES (?, ?, ?, ?, ?, ?, 1)",
                   ((f"big-{i:06d}", hashlib.sha256(f"tok-{i}".encode()).hexdigest(),
                     f"type{i % 4}", f"group{i % 8}",
                     '{"app":"1.0.%d","rootfs":"1.0.0"}' % (i % 5), "IDLE") for i in range(n)))
    db.commit()
    db.close()


def test_a_scrape_does_not_hold_up_the_requests_of_its_worker_thread(tmp_path):
    """One worker thread: every connection is on it. A scrape of a big fleet
    is computed on a thread of its own, so a check-in sent while it is being
    computed is answered before the scrape is."""
    srv = Server(str(tmp_path), extra=["--threads", "1"])
    srv.stop()
    fill_devices(srv.db, 100000)
    srv.start()
    try:
        done = {}

        def scrape_bg():
            st, _, body = scrape(srv)
            done["scrape"] = (time.perf_counter(), st, body)

        st, _, _ = scrape(srv)  # warm: the table in the page cache
        assert st == 200
        t = threading.Thread(target=scrape_bg)
        t0 = time.perf_counter()
        t.start()
        time.sleep(0.05)  # the scrape is being computed (~0.15 s here)
        st, _, b = srv.call("POST", "/api/v1/devices/big-000001/checkin", {"state": "IDLE"},
                            token="tok-1")
        t_checkin = time.perf_counter()
        assert st == 200, b
        t.join(60)
        t_scrape, st, body = done["scrape"]
        assert st == 200
        fams = parse(body.decode())
        assert value(fams, "ota_server_devices") == 100000
        render = value(fams, "ota_server_metrics_render_seconds")
        assert t_checkin < t_scrape, (t_checkin - t0, t_scrape - t0, render)
    finally:
        srv.stop()


# ---------------------------------------------------------------- Grafana and Prometheus files

PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "group", "by", "without", "on", "ignoring", "group_left", "group_right",
    "and", "or", "unless", "bool", "offset", "rate", "irate", "increase", "delta", "idelta",
    "histogram_quantile", "clamp_min", "clamp_max", "abs", "time", "vector", "scalar",
    "label_replace", "sort", "sort_desc", "max_over_time", "min_over_time", "avg_over_time",
    "changes", "resets", "deriv", "round", "le", "timestamp"}


def metric_names(expr):
    """The metric names an expression selects: identifiers outside {...}
    and by(...)/without(...) that are not PromQL words, durations or
    Grafana variables."""
    expr = re.sub(r"label_values\(([^,()]+),[^)]*\)", r"\1", expr)
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\$\{?\w+\}?", "", expr)
    names = set()
    for tok in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr):
        if tok not in PROMQL_WORDS and not re.fullmatch(r"\d+[smhdwy]", tok):
            names.add(tok)
    return names


def test_the_grafana_dashboard_queries_only_exported_families(mworld):
    srv = mworld["srv"]
    st, _, body = scrape(srv)
    assert st == 200
    fams = parse(body.decode())
    exported = set()
    for name, fam in fams.items():
        exported.add(name)
        if fam["type"] == "histogram":
            exported |= {name + "_bucket", name + "_sum", name + "_count"}
        if fam["type"] == "summary":
            exported |= {name + "_sum", name + "_count"}
    with open(os.path.join(MONITORING, "grafana-dashboard.json")) as f:
        dash = json.load(f)
    exprs = []

    def walk(o):
        if isinstance(o, dict):
            if isinstance(o.get("expr"), str):
                exprs.append(o["expr"])
            q = o.get("query") if o.get("type") == "query" else None
            q = q.get("query") if isinstance(q, dict) else q
            if isinstance(q, str):  # a template variable's query
                exprs.append(q)
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
    walk(dash)
    assert len(exprs) >= 8, exprs
    used = set()
    for e in exprs:
        names = metric_names(e)
        assert names, e
        assert names <= exported, (e, names - exported)
        used |= names
    # the dashboard shows the fleet, the rollouts, the requests and the faults
    for fam in ("ota_server_devices_by_version", "ota_server_rollout_progress_ratio",
                "ota_server_rollout_failure_ratio", "ota_server_http_requests_total",
                "ota_server_http_request_duration_seconds_bucket",
                "ota_server_fault_rule_applied_total"):
        assert fam in used, fam
    # the checker itself catches a name the server does not export
    assert metric_names('sum(rate(ota_server_nope_total{route="x"}[5m])) by (code)') == \
        {"ota_server_nope_total"}


@needs_promtool
def test_the_prometheus_example_config_is_valid(tmp_path):
    src = os.path.join(MONITORING, "prometheus.yml")
    with open(src) as f:
        text = f.read()
    assert "/metrics" in text or "metrics_path" not in text
    assert "credentials_file" in text
    # promtool resolves credentials_file relative to the config: give it one
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(text)
    m = re.search(r"credentials_file:\s*(\S+)", text)
    tok = tmp_path / os.path.basename(m.group(1))
    tok.write_text("token\n")
    cfg.write_text(text.replace(m.group(1), str(tok)))
    r = subprocess.run([PROMTOOL, "check", "config", str(cfg)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, (r.stdout, r.stderr)
