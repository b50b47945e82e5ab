"""The real ota-agent presenting its client certificate ([transport]
client_cert, client_key) to an ota-server that requires one
(--tls-client-ca, --require-client-cert; docs/protocol.md "Client
certificates"): it registers and installs an update over mutual TLS; with
another device's certificate the server refuses it and nothing changes."""

import os

import pytest

import otadev


@pytest.fixture(scope="module")
def world(make_world):
    w = make_world("mtls")
    w["v1"] = otadev.make_package(w["work"], "video-app", "1.0.0", "tar.gz")
    w.publish("v2", otadev.make_package(w["work"], "video-app-v2", "2.0.0", "deb"), "2.0.0")
    pki = w["pki"] = otadev.Pki(os.path.join(w["work"], "pki"))
    w["mtls"] = w.new_server(tls=pki.server_cert(),
                             extra=["--tls-client-ca", pki.ca, "--require-client-cert"])
    return w


def mtls_device(world, tmp_path, dev_id, cert):
    srv = world["mtls"]
    transport = {"ca_file": srv.tls[0]}
    if cert:
        transport.update(client_cert=cert[0], client_key=cert[1])
    return otadev.Device(str(tmp_path / dev_id), srv, world["keys"], world["v1"],
                         device_id=dev_id, transport=transport)


def test_agent_updates_over_mutual_tls(world, tmp_path):
    srv = world["mtls"]
    dev = mtls_device(world, tmp_path, "mtls-1", world["pki"].issue("mtls-1"))
    try:
        r = dev.agent("update")  # registers with its certificate: nothing offered yet
        assert r.returncode == 0, r.stderr
        assert srv.admin("GET", "/api/v1/devices/mtls-1")[0] == 200
        srv.offer("v2", device_id="mtls-1")
        r = dev.agent("update")
        assert r.returncode == 0, r.stderr
        assert dev.current() == "b" and dev.app_version()["version"] == "2.0.0"
        assert srv.reports("mtls-1")[-1]["status"] == "success"
    finally:
        dev.stop()


@pytest.mark.parametrize("cert_of", ["another", None])
def test_agent_without_its_own_certificate_is_refused(world, tmp_path, cert_of):
    srv = world["mtls"]
    dev_id = f"mtls-{cert_of or 'none'}"
    cert = world["pki"].issue("mtls-someone-else") if cert_of else None
    dev = mtls_device(world, tmp_path, dev_id, cert)
    try:
        r = dev.agent("update")
        assert r.returncode != 0
        assert "403" in r.stderr and "certificate" in r.stderr, r.stderr
        assert srv.admin("GET", f"/api/v1/devices/{dev_id}")[0] == 404
        assert dev.current() == "a" and dev.app_version()["version"] == "1.0.0"
    finally:
        dev.stop()
