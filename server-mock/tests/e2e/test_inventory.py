"""Device attributes and time zones over real HTTP (docs/protocol.md
"Register", "Check in", "Rollouts"): registration and check-in store them,
the admin device endpoints show them, a store written before them is
migrated, rollouts filter on them, the stratified canary takes every device
type, and a maintenance window offers only inside the device's local
window."""

import datetime
import os
import sqlite3

import pytest

from test_server_api import ADMIN, ENROLL, Server, otadev  # noqa: F401
from test_rollouts import act, checkin, create, get, rworld  # noqa: F401


def device(srv, dev):
    st, _, b = srv.admin("GET", f"/api/v1/devices/{dev}")
    assert st == 200, b
    return b


def test_register_and_checkin_store_attributes_and_timezone(rworld):
    srv = rworld["srv"]
    tok = srv.register("inv-1", group="inv", attributes={"region": "eu", "hw": "rev2"},
                       timezone="Europe/Berlin")
    d = device(srv, "inv-1")
    assert d["attributes"] == {"hw": "rev2", "region": "eu"} and d["timezone"] == "Europe/Berlin"
    # a check-in updates them; one that sends neither keeps them
    st, _, b = srv.call("POST", "/api/v1/devices/inv-1/checkin",
                        {"attributes": {"region": "us"}, "timezone": "-05:00"}, token=tok)
    assert st == 200, b
    d = device(srv, "inv-1")
    assert d["attributes"] == {"region": "us"} and d["timezone"] == "-05:00"
    checkin(srv, "inv-1", tok)
    d = device(srv, "inv-1")
    assert d["attributes"] == {"region": "us"} and d["timezone"] == "-05:00"
    # an old agent sends neither: empty attributes, no zone
    srv.register("inv-old", group="inv")
    d = device(srv, "inv-old")
    assert d["attributes"] == {} and d["timezone"] == ""
    st, _, b = srv.admin("GET", "/api/v1/devices?group=inv")
    assert st == 200 and {x["device_id"]: x["timezone"] for x in b["devices"]} == {
        "inv-1": "-05:00", "inv-old": ""}


@pytest.mark.parametrize("extra,want", [
    ({"attributes": {"Region": "eu"}}, "field attributes: key 'Region'"),
    ({"attributes": {f"k{i}": "v" for i in range(17)}}, "at most 16"),
    ({"attributes": {"region": 3}}, "field attributes.region"),
    ({"attributes": {"region": "x" * 65}}, "field attributes.region"),
    ({"attributes": ["region"]}, "field attributes"),
    ({"timezone": "Mars/Olympus"}, "field timezone"),
    ({"timezone": "../../etc/passwd"}, "field timezone"),
    ({"timezone": "+15:00"}, "field timezone"),
])
def test_bad_attributes_and_zones_are_refused(rworld, extra, want):
    srv = rworld["srv"]
    body = {"device_id": "inv-bad", "device_type": "rpi3b", **extra}
    st, _, b = srv.call("POST", "/api/v1/devices/register", body, token=ENROLL)
    assert st == 400 and want in b["detail"], b


def test_a_store_from_before_attributes_is_migrated(tmp_path):
    db = str(tmp_path / "ota-server.db")
    con = sqlite3.connect(db)
    con.executescript(
        "CREATE TABLE devices(id TEXT PRIMARY KEY, token_sha256 TEXT NOT NULL,"
        " type TEXT NOT NULL DEFAULT '', grp TEXT NOT NULL DEFAULT '',"
        " tags TEXT NOT NULL DEFAULT '[]', versions TEXT NOT NULL DEFAULT '{}',"
        " slots TEXT NOT NULL DEFAULT '{}', state TEXT NOT NULL DEFAULT '',"
        " registered_ms INTEGER NOT NULL, reenrolled_ms INTEGER NOT NULL DEFAULT 0,"
        " last_checkin_ms INTEGER NOT NULL DEFAULT 0, checkins INTEGER NOT NULL DEFAULT 0);"
        "INSERT INTO devices(id, token_sha256, type, registered_ms) VALUES('old-1', 'x', 'rpi3b', 1);")
    con.commit()
    con.close()
    srv = Server(str(tmp_path))
    try:
        d = device(srv, "old-1")
        assert d["attributes"] == {} and d["timezone"] == "" and d["device_type"] == "rpi3b"
        srv.register("new-1", attributes={"region": "eu"}, timezone="UTC")
        assert device(srv, "new-1")["attributes"] == {"region": "eu"}
    finally:
        srv.stop()


def test_rollout_filtered_by_attributes(rworld):
    srv = rworld["srv"]
    toks = {}
    for i in range(12):
        attrs = {"region": "eu" if i % 3 else "us", "network": "lte" if i % 2 else "wifi"}
        toks[f"af-{i:02d}"] = (srv.register(f"af-{i:02d}", group="af", attributes=attrs), attrs)
    r = create(srv, {"id": "af1", "release_id": "v2", "strategy": "immediate",
                     "filters": {"group": "af", "attributes": {"region": "eu", "network": "lte"}}})
    want = {d for d, (_, a) in toks.items() if a == {"region": "eu", "network": "lte"}}
    assert r["devices"] == len(want) and r["definition"]["filters"]["attributes"] == {
        "region": "eu", "network": "lte"}
    act(srv, "af1", "approve")
    act(srv, "af1", "start")
    offered = {d for d, (tok, _) in toks.items() if checkin(srv, d, tok)}
    assert offered == want
    act(srv, "af1", "cancel")


def test_stratified_canary_takes_every_device_type(rworld):
    srv = rworld["srv"]
    toks = {}
    for i in range(40):
        dt = "rare" if i == 17 else ("rpi3b" if i % 2 else "rpi4")
        toks[f"sc-{i:02d}"] = srv.register(f"sc-{i:02d}", device_type=dt, group="sc",
                                           tags=["internal"] if i == 30 else [])
    create(srv, {"id": "sc1", "release_id": "v2", "strategy": "canary",
                 "filters": {"group": "sc"},
                 "canary": {"strata": ["device_type"], "first_tags": ["internal"]},
                 "stages": [{"batch_size": 1}, {"percent": 100}]})
    act(srv, "sc1", "approve")
    b = act(srv, "sc1", "start")
    st, _, rows = srv.admin("GET", "/api/v1/rollouts/sc1/devices?limit=100")
    stage0 = {r["device_id"] for r in rows["devices"] if r["stage"] == 0}
    # the internal device, then one of each of the 3 types (the internal one
    # is an rpi4 and counts for it): the canary grew from 1 to 3
    assert "sc-17" in stage0 and "sc-30" in stage0 and len(stage0) == 3, stage0
    assert b["metrics"]["stages"][0]["devices"] == 3, b["metrics"]
    assert get(srv, "sc1")["definition"]["canary"] == {
        "strata": ["device_type"], "per_stratum": 1, "first_tags": ["internal"]}
    act(srv, "sc1", "cancel")


def test_window_offers_only_inside_the_local_window(rworld):
    srv = rworld["srv"]
    now = datetime.datetime.now(datetime.timezone.utc)
    minute = now.hour * 60 + now.minute
    start = (minute + 180 - 10) % 1440  # opened 10 minutes ago at UTC+03:00
    end = (start + 60) % 1440
    hhmm = lambda m: f"{m // 60:02d}:{m % 60:02d}"  # noqa: E731
    inside = srv.register("win-in", group="win", timezone="+03:00")
    outside = srv.register("win-out", group="win")  # no zone: UTC
    create(srv, {"id": "win1", "release_id": "v2", "strategy": "immediate",
                 "filters": {"group": "win"},
                 "window": {"start": hhmm(start), "end": hhmm(end)}})
    act(srv, "win1", "approve")
    act(srv, "win1", "start")
    assert checkin(srv, "win-out", outside) is None
    u = checkin(srv, "win-in", inside)
    assert u and u["update_id"] == "win1-win-in"
    st, _, rows = srv.admin("GET", "/api/v1/rollouts/win1/devices")
    assert {r["device_id"]: r["state"] for r in rows["devices"]} == {
        "win-in": "offered", "win-out": "pending"}
    act(srv, "win1", "cancel")


def test_real_agent_sends_its_configured_attributes_and_zone(rworld, tmp_path):
    srv = rworld["srv"]
    dev = otadev.Device(str(tmp_path / "inv-agent"), srv, rworld["keys"], rworld["v1"],
                        device_id="inv-agent-1",
                        agent_extra={"attributes": "region=eu, network=lte",
                                     "timezone": "Europe/Berlin"})
    try:
        r = dev.agent("update")
        assert r.returncode == 0, r.stderr
        d = device(srv, "inv-agent-1")
        assert d["attributes"] == {"network": "lte", "region": "eu"}, d
        assert d["timezone"] == "Europe/Berlin" and d["state"], d
    finally:
        dev.stop()


def test_window_openings_drive_the_virtual_clock(rworld, tmp_path):
    """The server's next deadline (docs/protocol.md "Virtual clock") holds
    the next window opening of a pending device, in its zone."""
    t0 = 1_800_000_000_000  # 2027-01-15 08:00 UTC: 17:00 in Tokyo
    hour = 3_600_000
    srv = Server(str(tmp_path), extra=["--public-key", rworld["keys"].pub,
                                       "--virtual-clock", str(t0)])
    try:
        st, _, b = srv.admin("POST", "/api/v1/releases",
                             {"dir": rworld["rel_v2"], "id": "v2", "publish": True})
        assert st == 201, b
        tokyo = srv.register("vw-tokyo", group="vw", timezone="Asia/Tokyo")
        utc = srv.register("vw-utc", group="vw")
        create(srv, {"id": "vw1", "release_id": "v2", "strategy": "immediate",
                     "filters": {"group": "vw"}, "window": {"start": "02:00", "end": "06:00"}})
        act(srv, "vw1", "approve")
        act(srv, "vw1", "start")
        clock = lambda: srv.admin("GET", "/api/v1/admin/clock")[2]  # noqa: E731
        assert clock()["next_deadline_ms"] == t0 + 9 * hour  # 02:00 in Tokyo
        assert checkin(srv, "vw-tokyo", tokyo) is None
        st, _, b = srv.admin("POST", "/api/v1/admin/clock", {"advance_to_ms": t0 + 9 * hour})
        # Tokyo's window is open: nothing due for it until tomorrow; UTC's comes next
        assert st == 200 and b["next_deadline_ms"] == t0 + 18 * hour, b
        assert checkin(srv, "vw-tokyo", tokyo)["update_id"] == "vw1-vw-tokyo"
        assert checkin(srv, "vw-utc", utc) is None
        assert clock()["next_deadline_ms"] == t0 + 18 * hour  # 02:00 UTC tomorrow
        srv.admin("POST", "/api/v1/admin/clock", {"advance_to_ms": t0 + 18 * hour})
        assert checkin(srv, "vw-utc", utc)["update_id"] == "vw1-vw-utc"
        assert clock()["next_deadline_ms"] is None  # nobody pending
    finally:
        srv.stop()


def test_versions_and_slots_round_trip_whatever_their_characters(rworld):
    # api_device.c writes the stored text of versions and slots itself when no
    # value needs an escape, and through jansson when one does: both must
    # store what the device sent, and a repeated check-in must see no change
    srv = rworld["srv"]
    tok = srv.register("inv-chars", group="inv")
    for versions, slots in (({"app": "1.0.0", "rootfs": "2.0"}, {"app": "a"}),
                            ({"app": 'say "hi"', "rootfs": "back\\slash"}, {"rootfs": "b"}),
                            ({"app": "caf\u00e9 \u20ac", "rootfs": ""}, {"app": "a", "rootfs": "b"}),
                            ({"rootfs": "9"}, {})):
        for _ in range(2):
            st, _, b = srv.call("POST", "/api/v1/devices/inv-chars/checkin",
                                {"state": "IDLE", "versions": versions, "slots": slots}, token=tok)
            assert st == 200, b
            d = device(srv, "inv-chars")
            assert d["versions"] == versions and d["slots"] == slots, d
