"""blue_green rollouts over real HTTP: devices install and wait (standby),
the operator's `activate` (or activate_at_ms) switches them, `cancel` makes
them abandon; then real ota-agent devices through STANDBY, a restart in
STANDBY, and the activation (docs/protocol.md "Check in" and "Rollouts")."""

import time

from test_rollouts import (act, checkin, create, get, register_group, report,  # noqa: F401
                           rworld, wait_for)
from test_server_api import Server, otadev


def standby_checkin(srv, dev, token, update_id):
    st, _, b = srv.call("POST", f"/api/v1/devices/{dev}/checkin",
                        {"state": "STANDBY", "update_id": update_id,
                         "versions": {"app": "1.0.0", "rootfs": ""}}, token=token)
    assert st == 200, b
    return b


def install_all(srv, rid, devs):
    for d, tok in devs.items():
        offer = checkin(srv, d, tok)
        assert offer["update_id"] == f"{rid}-{d}"
        assert offer["activation"] == {"mode": "wait", "not_after_ms": 1795086400000}
        report(srv, d, tok, offer["update_id"], rid, "in_progress", state="INSTALLING")
        report(srv, d, tok, offer["update_id"], rid, "in_progress", state="STANDBY")


def test_blue_green_waits_then_the_operator_activates(rworld):
    srv = rworld["srv"]
    devs = register_group(srv, "bg1", 6)
    create(srv, {"id": "bg1", "release_id": "v2", "strategy": "blue_green",
                 "filters": {"group": "bg1"}, "stages": [{"percent": 100}],
                 "not_after_ms": 1795086400000})
    act(srv, "bg1", "approve")
    act(srv, "bg1", "start")
    install_all(srv, "bg1", devs)
    r = get(srv, "bg1")
    assert r["metrics"]["standby"] == 6 and r["metrics"]["by_state"]["standby"] == 6
    assert r["status"]["state"] == "running" and r["status"]["activated_ms"] == 0
    d0 = "bg1-0000"
    assert standby_checkin(srv, d0, devs[d0], f"bg1-{d0}") == {"update": None}
    b = act(srv, "bg1", "activate")
    assert b["status"]["activated_ms"] > 0
    act(srv, "bg1", "activate", expect=200)  # already activated: unchanged
    for d, tok in devs.items():
        assert standby_checkin(srv, d, tok, f"bg1-{d}") == {"update": None,
                                                            "activate": f"bg1-{d}"}
        report(srv, d, tok, f"bg1-{d}", "bg1", "in_progress", state="SWITCHING")
        report(srv, d, tok, f"bg1-{d}", "bg1", "success", state="IDLE")
    r = get(srv, "bg1")
    assert r["status"]["state"] == "completed", r
    assert r["metrics"]["by_state"]["success"] == 6


def test_blue_green_cancel_makes_waiting_devices_abandon(rworld):
    srv = rworld["srv"]
    devs = register_group(srv, "bg2", 3)
    create(srv, {"id": "bg2", "release_id": "v2", "strategy": "blue_green",
                 "filters": {"group": "bg2"}, "stages": [{"percent": 100}],
                 "not_after_ms": 1795086400000})
    act(srv, "bg2", "approve")
    act(srv, "bg2", "start")
    install_all(srv, "bg2", devs)
    act(srv, "bg2", "cancel")
    act(srv, "bg2", "activate", expect=409)
    for d, tok in devs.items():
        assert standby_checkin(srv, d, tok, f"bg2-{d}") == {"update": None,
                                                            "abandon": f"bg2-{d}"}


def test_blue_green_activates_at_activate_at_ms(rworld):
    srv = rworld["srv"]
    devs = register_group(srv, "bg4", 2)
    at = int(time.time() * 1000) + 1500
    create(srv, {"id": "bg4", "release_id": "v2", "strategy": "blue_green",
                 "filters": {"group": "bg4"}, "stages": [{"percent": 100}],
                 "activate_at_ms": at})
    act(srv, "bg4", "approve")
    act(srv, "bg4", "start")
    for d, tok in devs.items():
        offer = checkin(srv, d, tok)
        assert offer["activation"] == {"mode": "wait"}
        report(srv, d, tok, offer["update_id"], "bg4", "in_progress", state="STANDBY")
    d0 = "bg4-0000"
    assert standby_checkin(srv, d0, devs[d0], f"bg4-{d0}") == {"update": None}
    # the server's timer ticks once a second: activated at or after activate_at_ms
    assert wait_for(lambda: get(srv, "bg4")["status"]["activated_ms"] >= at, 10), get(srv, "bg4")
    assert standby_checkin(srv, d0, devs[d0], f"bg4-{d0}")["activate"] == f"bg4-{d0}"
    act(srv, "bg4", "cancel")


def test_activate_is_refused_for_other_strategies(rworld):
    srv = rworld["srv"]
    register_group(srv, "bg3", 1)
    create(srv, {"id": "bg3", "release_id": "v2", "strategy": "immediate",
                 "filters": {"group": "bg3"}})
    act(srv, "bg3", "approve")
    act(srv, "bg3", "start")
    st, _, b = srv.admin("POST", "/api/v1/rollouts/bg3/activate")
    assert st == 409 and "not blue_green" in b["detail"], b
    act(srv, "bg3", "cancel")


def test_real_agents_wait_in_standby_across_restarts_then_switch(rworld, tmp_path):
    srv = Server(str(tmp_path), extra=["--public-key", rworld["keys"].pub])
    agents = []
    try:
        st, _, b = srv.admin("POST", "/api/v1/releases",
                             {"dir": rworld["rel_v2"], "id": "v2", "publish": True})
        assert st == 201, b
        create(srv, {"id": "b1", "release_id": "v2", "strategy": "blue_green",
                     "stages": [{"percent": 100}],
                     "not_after_ms": int(time.time() * 1000) + 3600_000})
        for i in range(2):
            dev = otadev.Device(str(tmp_path / f"agent{i}"), srv, rworld["keys"], rworld["v1"],
                                device_id=f"bga-{i}")
            agents.append(dev)
            r = dev.agent("update")  # registers
            assert r.returncode == 0, r.stderr
        act(srv, "b1", "approve")
        act(srv, "b1", "start")
        for dev in agents:
            r = dev.agent("update")  # downloads, installs, waits
            assert r.returncode == 0, r.stderr
            assert dev.status()["state"] == "STANDBY"
            assert dev.current() == "a" and dev.app_version()["version"] == "1.0.0"
            r = dev.agent("update")  # a new process (as after a power cut): still waiting
            assert r.returncode == 0, r.stderr
            assert dev.status()["state"] == "STANDBY"
        assert get(srv, "b1")["metrics"]["standby"] == 2
        act(srv, "b1", "activate")
        for dev in agents:
            r = dev.agent("update")
            assert r.returncode == 0, r.stderr
            assert dev.status()["state"] == "IDLE"
            assert dev.current() == "b" and dev.app_version()["version"] == "2.0.0"
        assert get(srv, "b1")["status"]["state"] == "completed"
    finally:
        for dev in agents:
            dev.stop()
        srv.stop()
