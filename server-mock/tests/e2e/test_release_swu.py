"""ota-server release add of SWUpdate releases (.swu, ota-pack swu): the
version, hardware compatibility and kind come from sw-description (read with
libconfig), the .swu itself is the release's payload file, and a malformed
sw-description is refused with a clear error and no release added."""

import json
import os
import sqlite3
import subprocess
import sys

import pytest

from test_server_api import ADMIN, Server, server_bin, sha256_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "agent", "tests", "swu"))
from swu_helpers import make_cert, members, pack, repack  # noqa: E402


@pytest.fixture
def swu_world(tmp_path):
    for tool in ("cpio", "openssl"):
        if subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True).returncode:
            pytest.skip(f"{tool} is needed (ci/install-deps)")
    d = str(tmp_path)
    cert, key = make_cert(d, "signer")
    image = os.path.join(d, "rootfs.img")
    with open(image, "wb") as f:
        f.write(os.urandom(70_001))
    swu = os.path.join(d, "os-1.2.3.swu")
    p = pack(swu, cert, key, image, hw=("1.0", "1.2"))
    assert p.returncode == 0, p.stderr
    os.makedirs(os.path.join(d, "srv"))
    srv = Server(os.path.join(d, "srv"))
    yield {"d": d, "cert": cert, "key": key, "image": image, "swu": swu, "srv": srv}
    srv.stop()


def ctl(srv, *args):
    return subprocess.run([server_bin()] + list(args) + ["--server", srv.url, "--admin-token",
                                                         ADMIN], capture_output=True, text=True)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def test_release_add_records_version_compatibility_and_the_swu(swu_world):
    srv = swu_world["srv"]
    r = ctl(srv, "release", "add", swu_world["swu"], "--publish")
    assert r.returncode == 0, r.stderr
    rel = json.loads(r.stdout)
    assert rel["id"] == "board-os-1.2.3" and rel["name"] == "board-os"
    assert rel["version"] == "1.2.3" and rel["kind"] == "rootfs"
    assert rel["format"] == "swu" and rel["hardware_compatibility"] == ["1.0", "1.2"]
    assert rel["payload"] == "os-1.2.3.swu" and rel["published"] and rel["has_payload"]
    assert rel["size"] == os.path.getsize(swu_world["swu"])
    assert rel["sha256"] == sha256_file(swu_world["swu"])
    stored = os.path.join(srv.data, "releases", rel["id"])
    assert read(os.path.join(stored, "os-1.2.3.swu")) == read(swu_world["swu"])
    d = os.path.join(swu_world["d"], "x")
    members(swu_world["swu"], d)
    assert rel["manifest"].encode() == read(os.path.join(d, "sw-description"))
    assert read(os.path.join(stored, "sw-description")) == read(os.path.join(d, "sw-description"))
    # what GET and the list say after a restart (the columns are stored)
    srv.stop()
    srv.start()
    st, _, got = srv.admin("GET", "/api/v1/releases/board-os-1.2.3")
    assert st == 200 and got["hardware_compatibility"] == ["1.0", "1.2"]
    assert got["format"] == "swu" and got["kind"] == "rootfs"


def test_app_swu_is_an_app_release(swu_world):
    d = swu_world["d"]
    archive = os.path.join(d, "app.tar")
    subprocess.run(["tar", "-cf", archive, "-C", d, "rootfs.img"], check=True)
    swu = os.path.join(d, "app.swu")
    p = pack(swu, swu_world["cert"], swu_world["key"], archive, kind="app", version="2.0.0",
             extra=["--app-path", "/opt/video-app"])
    assert p.returncode == 0, p.stderr
    r = ctl(swu_world["srv"], "release", "add", swu, "--id", "app-two")
    assert r.returncode == 0, r.stderr
    rel = json.loads(r.stdout)
    assert (rel["id"], rel["kind"], rel["version"], rel["name"]) == ("app-two", "app", "2.0.0",
                                                                    "video-app")
    assert rel["has_payload"] and not rel["published"]


BAD = [
    ('software = { version = "1.0.0";\n  oops', "sw-description line 2: syntax error"),
    ('software = { description = "x"; images: ( { type = "raw"; } ); };',
     "software.version (a string) is missing"),
    ('software = { version = "tomorrow"; images: ( { type = "raw"; } ); };',
     'version "tomorrow" is not MAJOR.MINOR.PATCH'),
    ('software = { version = "1.0.0"; hardware-compatibility = "1.0";'
     ' images: ( { type = "raw"; } ); };', "hardware-compatibility is not an array"),
    ('software = { version = "1.0.0"; scripts: ( { type = "shellscript"; } ); };',
     'no image of type "raw"'),
    ('@include "/etc/hostname"\nsoftware = { version = "1.0.0"; images: ( { type = "raw"; } ); };',
     "@include is not allowed"),
]


@pytest.mark.parametrize("text, reason", BAD)
def test_malformed_sw_description_is_refused_and_nothing_added(swu_world, text, reason):
    d = os.path.join(swu_world["d"], "bad")
    names = members(swu_world["swu"], d)
    with open(os.path.join(d, "sw-description"), "w") as f:
        f.write(text)
    bad = os.path.join(swu_world["d"], "bad.swu")
    repack(d, names, bad)
    srv = swu_world["srv"]
    r = ctl(srv, "release", "add", bad)
    assert r.returncode == 1 and reason in r.stderr, r.stderr
    assert srv.admin("GET", "/api/v1/releases")[2]["total"] == 0
    assert not os.path.exists(os.path.join(srv.data, "releases")) or \
        os.listdir(os.path.join(srv.data, "releases")) == []


def test_not_a_swu_is_refused_by_the_cli(swu_world):
    path = os.path.join(swu_world["d"], "notes.swu")
    with open(path, "w") as f:
        f.write("hello\n" * 40)
    r = ctl(swu_world["srv"], "release", "add", path)
    assert r.returncode == 1 and "not a cpio newc/crc archive" in r.stderr, r.stderr


def test_upload_must_carry_the_recorded_sw_description(swu_world):
    """The POST's sw-description and the uploaded .swu's first member must be
    the same text, or the payload is refused and the release stays without."""
    srv, swu = swu_world["srv"], swu_world["swu"]
    d = os.path.join(swu_world["d"], "y")
    members(swu, d)
    text = read(os.path.join(d, "sw-description")).decode().replace("1.2.3", "1.2.4")
    body = {"sw_description": text, "payload": "x.swu", "size": os.path.getsize(swu),
            "sha256": sha256_file(swu)}
    st, _, rel = srv.admin("POST", "/api/v1/releases", body)
    assert st == 201 and rel["version"] == "1.2.4" and not rel["has_payload"]
    st, _, err = srv.admin("PUT", f"/api/v1/releases/{rel['id']}/payload", raw=read(swu))
    assert st == 400 and "sw-description is not the release's" in err["detail"], err
    assert not srv.admin("GET", f"/api/v1/releases/{rel['id']}")[2]["has_payload"]
    # the same through payload_path: refused, nothing added
    body.update(sw_description=text.replace("1.2.4", "1.2.5"), payload_path=swu)
    st, _, err = srv.admin("POST", "/api/v1/releases", body)
    assert st == 400 and "sw-description is not the release's" in err["detail"], err
    assert srv.admin("GET", "/api/v1/releases/board-os-1.2.5")[0] == 404


@pytest.mark.parametrize("field, value, reason", [
    ("payload", "x.img", "ending in .swu"),
    ("payload", "../x.swu", "ending in .swu"),
    ("sha256", "ABC", "64 lower-case hex"),
    ("size", -1, "an integer >= 0"),
    ("manifest", "{}", "not with dir, manifest, signature"),
])
def test_bad_fields_are_refused(swu_world, field, value, reason):
    srv = swu_world["srv"]
    body = {"sw_description": 'software = { version = "1.0.0"; images: ( { type = "raw"; } ); };',
            "payload": "a.swu", "size": 10, "sha256": "0" * 64, field: value}
    st, _, err = srv.admin("POST", "/api/v1/releases", body)
    assert st == 400 and reason in err["detail"], err
    assert srv.admin("GET", "/api/v1/releases")[2]["total"] == 0


def test_a_store_of_an_older_server_gets_the_new_columns(swu_world, tmp_path):
    """An older server's releases table (no format, no compat) opens: its
    releases are ota-pack releases."""
    w = tmp_path / "old"
    w.mkdir()
    db = sqlite3.connect(str(w / "ota-server.db"))
    db.execute("CREATE TABLE releases(id TEXT PRIMARY KEY, name TEXT NOT NULL, version TEXT NOT"
               " NULL, kind TEXT NOT NULL, manifest TEXT NOT NULL, signature TEXT NOT NULL,"
               " payload_name TEXT NOT NULL, payload_path TEXT NOT NULL DEFAULT '', size INTEGER"
               " NOT NULL, sha256 TEXT NOT NULL, published INTEGER NOT NULL DEFAULT 0,"
               " published_ms INTEGER NOT NULL DEFAULT 0, created_ms INTEGER NOT NULL,"
               " seq INTEGER NOT NULL DEFAULT 0)")
    db.execute("INSERT INTO releases(id, name, version, kind, manifest, signature, payload_name,"
               " size, sha256, created_ms) VALUES('old-1.0.0', 'old', '1.0.0', 'app', '{}', '',"
               " 'a.deb', 1, ?, 1)", ("0" * 64,))
    db.commit()
    db.close()
    srv = Server(str(w))
    try:
        st, _, rel = srv.admin("GET", "/api/v1/releases/old-1.0.0")
        assert st == 200 and rel["format"] == "ota" and "hardware_compatibility" not in rel
    finally:
        srv.stop()


def test_github_face_leaves_swu_releases_out(swu_world):
    """An ota-agent polling the GitHub face needs a manifest: a published
    .swu release is neither listed, nor latest, nor downloadable there."""
    srv = swu_world["srv"]
    r = ctl(srv, "release", "add", swu_world["swu"], "--publish")
    assert r.returncode == 0, r.stderr
    assert srv.admin("GET", "/api/v1/releases?published=1")[2]["total"] == 1
    st, _, rels = srv.call("GET", "/repos/acme/os/releases")
    assert st == 200 and rels == []
    assert srv.call("GET", "/repos/acme/os/releases/latest")[0] == 404
    assert srv.call("GET", "/repos/acme/os/releases/tags/v1.2.3")[0] == 404
    st, _, _ = srv.call("GET", "/acme/os/releases/download/board-os-1.2.3/os-1.2.3.swu")
    assert st == 404
