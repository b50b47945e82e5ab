"""ota-server's fault kinds for tests of a client (docs/protocol.md, "Fault
plans"): echo answers with the request as the server saw it, redirect
answers a redirect, content_range names another total (or garbage) in a
206's Content-Range. Over real HTTP, on test_faults.py's server."""

import subprocess

from test_faults import applied, clean, fw, one_rule, put_plan  # noqa: F401 (fixtures)


def test_echo_answers_with_the_request_as_seen(fw, clean):
    srv = clean
    put_plan(srv, one_rule("/echo*", {"kind": "echo"}))
    st, h, b = srv.call("POST", "/echo/x?a=1&b", raw=b'{"k":1}', token="tok-123",
                        headers={"Content-Type": "application/json", "X-Thing": "v"})
    assert st == 200, b
    assert b["method"] == "POST" and b["path"] == "/echo/x"
    assert b["query"] == {"a": "1", "b": None}
    assert b["headers"]["authorization"] == "Bearer tok-123"
    assert b["headers"]["x-thing"] == "v"
    assert b["headers"]["content-type"] == "application/json"
    assert b["body"] == '{"k":1}' and b["body_bytes"] == 7
    e = applied(srv)[-1]
    assert e["kind"] == "echo" and e["x_request_id"] == h["x-request-id"]
    # A body that is not UTF-8: its size only.
    st, _, b = srv.call("POST", "/echo", raw=b"\xff\xfe")
    assert st == 200 and b["body"] is None and b["body_bytes"] == 2
    st, _, b = srv.call("GET", "/echo", headers={"X-Bin": "\xff"})  # sent as the byte 0xff
    assert b["method"] == "GET" and "authorization" not in b["headers"] and b["body"] == ""
    assert "x-bin" in b["headers"] and b["headers"]["x-bin"] is None


def test_echo_on_a_file_download_shows_range_and_if_range(fw, clean):
    srv = clean
    p = fw["gh_path"]
    put_plan(srv, one_rule(p, {"kind": "echo"}, count=1))
    st, _, b = srv.call("GET", p, headers={"Range": "bytes=10-", "If-Range": '"old"'})
    assert st == 200 and b["headers"]["range"] == "bytes=10-"
    assert b["headers"]["if-range"] == '"old"'
    st, _, body = srv.call("GET", p)  # count 1: the file again
    assert st == 200 and body == fw["data"]


def test_redirect_answers_the_code_and_location(fw, clean, tmp_path):
    srv = clean
    p = fw["gh_path"]
    put_plan(srv, one_rule("/moved/*", {"kind": "redirect", "location": p}))
    st, h, b = srv.call("GET", "/moved/img")
    assert st == 302 and h["location"] == p and b["location"] == p
    put_plan(srv, one_rule("/moved/*", {"kind": "redirect", "location": p, "code": 308}))
    st, h, _ = srv.call("GET", "/moved/img")
    assert st == 308 and h["location"] == p
    # A client that follows it gets the file, with its Range kept.
    out = tmp_path / "got"
    subprocess.run(["curl", "-sSfL", "-r", "100-", "-o", str(out),
                    f"http://127.0.0.1:{srv.port}/moved/img"], check=True, timeout=30)
    assert out.read_bytes() == fw["data"][100:]
    assert applied(srv)[-1]["location"] == p


def test_content_range_names_another_total_or_garbage(fw, clean):
    srv = clean
    p, data = fw["gh_path"], fw["data"]
    n = len(data)
    put_plan(srv, one_rule(p, {"kind": "content_range", "total_delta": 1000}))
    st, h, body = srv.call("GET", p, headers={"Range": "bytes=100-"})
    assert st == 206 and h["content-range"] == f"bytes 100-{n - 1}/{n + 1000}"
    assert body == data[100:]
    st, h, body = srv.call("GET", p)  # a 200 has no Content-Range to change
    assert st == 200 and "content-range" not in h and body == data
    put_plan(srv, one_rule(p, {"kind": "content_range", "text": "bytes garbage/??"}))
    st, h, body = srv.call("GET", p, headers={"Range": "bytes=0-9"})
    assert st == 206 and h["content-range"] == "bytes garbage/??" and body == data[:10]


def test_bad_client_kind_parameters_are_refused(fw, clean):
    srv = clean
    st, b = put_plan(srv, one_rule("/x", {"kind": "content_range"}))
    assert st == 400 and "needs exactly one of 'total_delta' and 'text'" in b["detail"]
    st, b = put_plan(srv, one_rule("/x", {"kind": "redirect", "location": "x"}))
    assert st == 400 and "'location' must start with" in b["detail"]
    st, b = put_plan(srv, one_rule("/x", {"kind": "echo", "status": 1}))
    assert st == 400 and "unknown key 'status'" in b["detail"]
    _, _, plan = srv.admin("GET", "/api/v1/faults")
    assert plan["rules"] == []  # the running plan is unchanged
