"""Device identity beyond tokens (issue 15), over real HTTPS: mutual TLS with
per-device client certificates (--tls-client-ca, --require-client-cert;
docs/protocol.md "Client certificates") and the read-only admin token
(--readonly-admin-token; docs/protocol.md "Authentication"). Certificates
are made with the openssl CLI in the test's directory (otadev.Pki)."""

import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("OTA_SOURCE_DIR", os.path.abspath(os.path.join(HERE, "..", "..", "..")))
sys.path.insert(0, os.path.join(SRC, "agent", "tests", "e2e"))
import otadev  # noqa: E402

READONLY = "read-only-secret"
DEVICE = {"device_type": "rpi3b", "versions": {"app": "1.0.0", "rootfs": ""}}


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("pki"))
    ca = otadev.Pki(os.path.join(d, "ca"))
    other = otadev.Pki(os.path.join(d, "other"), name="other-ca")
    return {"ca": ca, "a": ca.issue("dev-a"), "b": ca.issue("dev-b"),
            "stranger": other.issue("dev-a"), "server": ca.server_cert()}


def mtls_server(tmp_path, pki, *extra):
    return otadev.Server(None, str(tmp_path), tls=pki["server"],
                         extra=["--tls-client-ca", pki["ca"].ca, *extra])


def register(srv, dev, cert, token=otadev.ENROLL):
    return srv.call("POST", "/api/v1/devices/register", {"device_id": dev, **DEVICE},
                    token=token, cert=cert)


def test_a_device_acts_with_its_own_certificate_only(tmp_path, pki):
    srv = mtls_server(tmp_path, pki)
    try:
        st, _, b = register(srv, "dev-a", pki["a"])
        assert st == 201, b
        tok_a = b["token"]
        st, _, b = srv.call("POST", "/api/v1/devices/dev-a/checkin", {}, token=tok_a,
                            cert=pki["a"])
        assert st == 200, b
        # its token with another device's certificate: 403, naming both
        st, _, b = srv.call("POST", "/api/v1/devices/dev-a/checkin", {}, token=tok_a,
                            cert=pki["b"])
        assert st == 403 and "dev-b" in b["detail"] and "dev-a" in b["detail"], b
        st, _, b = srv.call("POST", "/api/v1/devices/dev-a/status",
                            {"update_id": "x", "status": "downloading"}, token=tok_a,
                            cert=pki["b"])
        assert st == 403, b
        st, _, b = srv.call("GET", "/api/v1/releases/r1/payload", token=tok_a, cert=pki["b"])
        assert st == 403, b
        # registering another id with dev-a's certificate: 403, nothing registered
        st, _, b = register(srv, "dev-b", pki["a"])
        assert st == 403 and "dev-a" in b["detail"], b
        st, _, b = srv.admin("GET", "/api/v1/devices/dev-b")
        assert st == 404, b
        # a certificate with the right CN from a CA the server does not trust: 403
        st, _, b = srv.call("POST", "/api/v1/devices/dev-a/checkin", {}, token=tok_a,
                            cert=pki["stranger"])
        assert st == 403 and "refused" in b["detail"], b
        # without --require-client-cert, no certificate still works (the token decides)
        st, _, b = srv.call("POST", "/api/v1/devices/dev-a/checkin", {}, token=tok_a)
        assert st == 200, b
        # the admin API keeps its tokens, with or without a certificate
        assert srv.admin("GET", "/api/v1/devices")[0] == 200
        assert srv.admin("GET", "/api/v1/devices", cert=pki["b"])[0] == 200
        # a re-enrollment refused for its certificate does not use up the admin's approval
        srv.allow_reenroll("dev-a")
        st, _, b = register(srv, "dev-a", pki["b"])
        assert st == 403, b
        st, _, b = register(srv, "dev-a", pki["a"])
        assert st == 200, b
    finally:
        srv.stop()


def test_require_client_cert_refuses_device_calls_without_one(tmp_path, pki):
    srv = mtls_server(tmp_path, pki, "--require-client-cert")
    try:
        st, _, b = register(srv, "dev-a", None)
        assert st == 403 and "--require-client-cert" in b["detail"], b
        st, _, b = register(srv, "dev-a", pki["a"])
        assert st == 201, b
        tok = b["token"]
        st, _, b = srv.call("POST", "/api/v1/devices/dev-a/checkin", {}, token=tok)
        assert st == 403 and "certificate" in b["detail"], b
        st, _, b = srv.call("POST", "/api/v1/devices/dev-a/checkin", {}, token=tok,
                            cert=pki["a"])
        assert st == 200, b
        # admin calls need no certificate
        st, _, b = srv.admin("GET", "/api/v1/devices")
        assert st == 200 and b["total"] == 1, b
    finally:
        srv.stop()


@pytest.mark.parametrize("args, words", [
    (["--require-client-cert"], "--tls-client-ca"),
    (["--tls-client-ca", "CA"], "--tls-cert"),
    (["--readonly-admin-token", otadev.ADMIN], "is the admin token"),
    (["--readonly-admin-token-file", "NOFILE"], "the read-only admin token"),
])
def test_bad_identity_options_stop_the_server(tmp_path, pki, args, words):
    args = [{"CA": pki["ca"].ca, "NOFILE": str(tmp_path / "nofile")}.get(a, a) for a in args]
    r = subprocess.run([otadev.server_bin(), "serve", "--port", "0", "--db",
                        str(tmp_path / "db"), "--data-dir", str(tmp_path / "data"),
                        "--admin-token", otadev.ADMIN, *args],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and words in r.stderr, r.stderr


def test_the_read_only_admin_token_reads_but_changes_nothing(tmp_path, pki):
    srv = otadev.Server(None, str(tmp_path), tls=pki["server"],
                        extra=["--readonly-admin-token", READONLY])
    try:
        tok = register(srv, "dev-a", None)[2]["token"]
        assert srv.call("POST", "/api/v1/devices/dev-a/checkin", {}, token=tok)[0] == 200
        for path in ("/api/v1/devices", "/api/v1/devices/dev-a", "/api/v1/releases",
                     "/api/v1/reports", "/api/v1/rollouts", "/api/v1/faults", "/metrics"):
            st, _, b = srv.call("GET", path, token=READONLY)
            assert st == 200, (path, b)
        changes = [
            ("POST", "/api/v1/releases", {"dir": "/nonexistent"}),
            ("DELETE", "/api/v1/releases/r1", None),
            ("POST", "/api/v1/releases/r1/publish", None),
            ("PUT", "/api/v1/releases/r1/payload", None),
            ("POST", "/api/v1/rollouts", {"id": "ro", "release": "r1"}),
            ("PUT", "/api/v1/faults", {"rules": []}),
            ("DELETE", "/api/v1/faults", None),
            ("POST", "/api/v1/devices/dev-a/reenroll", None),
        ]
        for method, path, body in changes:
            raw = b"x" if method == "PUT" and path.endswith("payload") else None
            st, _, b = srv.call(method, path, body, token=READONLY, raw=raw)
            assert st == 403 and "read-only" in b["detail"], (method, path, st, b)
        # nothing changed: no re-enrollment approved, no rollout
        assert srv.admin("GET", "/api/v1/rollouts")[2]["rollouts"] == []
        st, _, b = srv.call("POST", "/api/v1/devices/register", {"device_id": "dev-a", **DEVICE},
                            token=otadev.ENROLL)
        assert st == 409, b
        # the operator (--admin-token) still does everything; a wrong token is 401
        srv.allow_reenroll("dev-a")
        st, _, b = srv.call("POST", "/api/v1/devices/register", {"device_id": "dev-a", **DEVICE},
                            token=otadev.ENROLL)
        assert st == 200, b
        tok = b["token"]
        st, _, b = srv.call("GET", "/api/v1/devices", token="wrong")
        assert st == 401, b
        # a device's token is no admin token of any role
        assert srv.call("GET", "/api/v1/devices", token=tok)[0] == 401
    finally:
        srv.stop()


def test_the_read_only_token_from_a_file(tmp_path):
    token_file = tmp_path / "ro.token"
    token_file.write_text(READONLY + "\n")
    srv = otadev.Server(None, str(tmp_path),
                        extra=["--readonly-admin-token-file", str(token_file)])
    try:
        assert srv.call("GET", "/api/v1/releases", token=READONLY)[0] == 200
        st, _, b = srv.call("POST", "/api/v1/releases/r1/publish", token=READONLY)
        assert st == 403 and "read-only" in b["detail"], b
        assert srv.call("GET", "/api/v1/releases", token=READONLY + "x")[0] == 401
    finally:
        srv.stop()
