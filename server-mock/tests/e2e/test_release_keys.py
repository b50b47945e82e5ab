"""ota-server's upload check during a release-key rotation (docs/DESIGN.md,
"Release keys"): --public-key takes several key files, comma-separated, and a
release must verify with one of them; a release signed by another key is 400
and not stored."""

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("OTA_SOURCE_DIR", os.path.abspath(os.path.join(HERE, "..", "..", "..")))
sys.path.insert(0, os.path.join(SRC, "agent", "tests", "e2e"))
import otadev  # noqa: E402


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    ks = {}
    for name in ("old", "new", "other"):
        os.makedirs(d / name)
        ks[name] = otadev.Keys(str(d / name))
    ks["payload"] = otadev.make_package(str(d), "video-app", "1.0.0", "tar.gz")
    return ks


def test_an_upload_verifies_with_any_of_the_keys(tmp_path, keys):
    os.makedirs(tmp_path / "srv")
    srv = otadev.Server(None, str(tmp_path / "srv"),
                        extra=["--public-key", f"{keys['old'].pub},{keys['new'].pub}"])
    try:
        for rid, signer, expect in (("by-old", "old", 201), ("by-new", "new", 201),
                                    ("by-other", "other", 400)):
            d = otadev.publish(str(tmp_path), rid, keys["payload"], "1.0.0", keys[signer])
            st, _, b = srv.admin("POST", "/api/v1/releases", {"dir": d, "id": rid})
            assert st == expect, (rid, b)
            if expect == 400:
                assert "verifies with none of the 2 --public-key keys" in b["detail"], b
        st, _, b = srv.admin("GET", "/api/v1/releases")
        assert sorted(x["id"] for x in b["releases"]) == ["by-new", "by-old"]
    finally:
        srv.stop()
    # one key: its own reason, as before
    os.makedirs(tmp_path / "srv1")
    srv = otadev.Server(None, str(tmp_path / "srv1"), extra=["--public-key", keys["old"].pub])
    try:
        d = os.path.join(str(tmp_path), "by-new")
        st, _, b = srv.admin("POST", "/api/v1/releases", {"dir": d, "id": "by-new"})
        assert st == 400 and b["detail"].startswith("signature: "), b
        assert "none of" not in b["detail"], b
    finally:
        srv.stop()


def test_a_missing_key_file_stops_the_server(tmp_path, keys):
    with pytest.raises(RuntimeError):
        otadev.Server(None, str(tmp_path), extra=["--public-key",
                                                  f"{keys['old'].pub},{tmp_path}/nope.pub"])
    with open(tmp_path / "server.log") as f:
        log = f.read()
    assert "--public-key" in log and "nope.pub" in log, log
