"""Several runners on one virtual clock (ota-server serve --virtual-clock T
--clock-parties N; docs/protocol.md "Several runners on one clock") over real
HTTP: a party's ask waits (its connection put aside: the server, one worker
thread here, goes on answering) until every party waits, then the clock goes
to the earliest time asked and releases the parties that asked for it; a
party with nothing to do asks for a late time or leaves, and never holds the
others; plain advances are refused; shutdown ends a waiting ask.

Needs OTA_BUILD_DIR like test_server_api.py (whose helpers it reuses)."""

import os
import subprocess
import threading
import time

import pytest

from test_server_api import Server, server_bin

T0 = 1_800_000_000_000


@pytest.fixture
def srv(tmp_path):
    s = Server(str(tmp_path), extra=["--virtual-clock", str(T0), "--clock-parties", "2",
                                     "--threads", "1"])
    yield s
    s.stop()


def ask_async(srv, body):
    """POSTs the ask on a thread: (thread, result dict filled with r=(status, _, body))."""
    got = {}

    def call():
        try:
            got["r"] = srv.admin("POST", "/api/v1/admin/clock", body)
        except OSError as e:  # the connection closed (shutdown)
            got["closed"] = e

    th = threading.Thread(target=call, daemon=True)
    th.start()
    return th, got


def parties(srv):
    st, _, b = srv.admin("GET", "/api/v1/admin/clock")
    assert st == 200, b
    return b["now_ms"], b["parties"]


def wait_waiting(srv, n):
    deadline = time.time() + 10
    while parties(srv)[1]["waiting"] != n:
        assert time.time() < deadline, parties(srv)
        time.sleep(0.01)


def test_the_clock_moves_to_the_earliest_once_all_wait(srv):
    th0, got0 = ask_async(srv, {"advance_to_ms": T0 + 5000, "party": 0})
    wait_waiting(srv, 1)
    time.sleep(0.2)  # real time moves nothing
    assert "r" not in got0
    assert parties(srv) == (T0, {"n": 2, "waiting": 1, "left": 0})
    # Without a party, an advance would pass party 0's back: refused.
    st, _, b = srv.admin("POST", "/api/v1/admin/clock", {"advance_to_ms": T0 + 1})
    assert st == 409 and "parties" in b["detail"], b
    # Party 1 asks earlier: answered at its time; party 0 keeps waiting.
    st, _, b = srv.admin("POST", "/api/v1/admin/clock", {"advance_to_ms": T0 + 2000, "party": 1})
    assert st == 200 and b["now_ms"] == T0 + 2000, b
    assert b["parties"] == {"n": 2, "waiting": 1, "left": 0}
    assert "r" not in got0
    # Party 1 asks past party 0's time: the clock stops at party 0's.
    th1, got1 = ask_async(srv, {"advance_to_ms": T0 + 9000, "party": 1})
    th0.join(10)
    assert got0["r"][0] == 200 and got0["r"][2]["now_ms"] == T0 + 5000, got0
    time.sleep(0.1)
    assert "r" not in got1
    # A party waiting already cannot ask twice; the past is refused.
    st, _, b = srv.admin("POST", "/api/v1/admin/clock", {"advance_to_ms": T0 + 9000, "party": 1})
    assert st == 409 and "waits already" in b["detail"], b
    st, _, b = srv.admin("POST", "/api/v1/admin/clock", {"advance_to_ms": T0, "party": 0})
    assert st == 409 and "only moves forward" in b["detail"], b
    # Party 0 is done: it leaves, and party 1 goes on alone.
    st, _, b = srv.admin("POST", "/api/v1/admin/clock", {"party": 0, "leave": True})
    assert st == 200, b
    th1.join(10)
    assert got1["r"][0] == 200 and got1["r"][2]["now_ms"] == T0 + 9000, got1
    st, _, b = srv.admin("POST", "/api/v1/admin/clock", {"advance_to_ms": T0 + 9500, "party": 1})
    assert st == 200 and b["now_ms"] == T0 + 9500, b
    assert b["parties"] == {"n": 2, "waiting": 0, "left": 1}
    st, _, b = srv.admin("POST", "/api/v1/admin/clock", {"advance_to_ms": T0 + 9600, "party": 0})
    assert st == 409 and "left" in b["detail"], b


@pytest.mark.parametrize("body,why", [
    ({"advance_ms": 5, "party": 0}, "advance_to_ms"),
    ({"advance_to_ms": T0 + 5, "party": -1}, "party"),
    ({"advance_to_ms": T0 + 5, "party": "0"}, "party"),
    ({"party": 0, "leave": False}, "leave"),
    ({"leave": True}, "party"),
    ({"party": 0, "leave": True, "advance_to_ms": T0 + 5}, "no time"),
    ({"advance_to_ms": T0 + 5, "party": 2}, "parties"),
])
def test_bad_asks_are_refused(srv, body, why):
    st, _, b = srv.admin("POST", "/api/v1/admin/clock", body)
    assert st in (400, 409) and why in b["detail"], b
    assert parties(srv) == (T0, {"n": 2, "waiting": 0, "left": 0})


def test_a_party_needs_clock_parties(tmp_path):
    s = Server(str(tmp_path), extra=["--virtual-clock", str(T0)])
    try:
        st, _, b = s.admin("POST", "/api/v1/admin/clock", {"advance_to_ms": T0 + 5, "party": 0})
        assert st == 409 and "no parties" in b["detail"], b
        st, _, b = s.admin("GET", "/api/v1/admin/clock")
        assert "parties" not in b
    finally:
        s.stop()


def test_shutdown_ends_a_waiting_ask(srv):
    th, got = ask_async(srv, {"advance_to_ms": T0 + 5000, "party": 0})
    wait_waiting(srv, 1)
    t = time.time()
    srv.stop()
    th.join(10)
    assert not th.is_alive()
    assert time.time() - t < 10
    # answered 503, or its connection closed
    assert "closed" in got or got["r"][0] == 503, got


def test_clock_parties_needs_the_virtual_clock(tmp_path):
    for extra, why in ((["--clock-parties", "2"], "needs --virtual-clock"),
                       (["--virtual-clock", str(T0), "--clock-parties", "0"], "clock-parties")):
        p = subprocess.run([server_bin(), "serve", "--port", "0", "--db",
                            os.path.join(str(tmp_path), "x.db"), "--data-dir", str(tmp_path),
                            *extra], capture_output=True, text=True, timeout=30)
        assert p.returncode == 2 and why in p.stderr, p.stderr
