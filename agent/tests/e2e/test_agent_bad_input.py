"""Bad input to the real ota-agent, end to end: a clear error and nothing
lost. Each test checks the agent's exit code (1: refused or failed), a
reason on stderr, `current` still -> "a", slot a's whole tree unchanged, the
app still answering 1.0.0, and a "failure" report (never "success") with the
reason at the server.

The reason is looked for in the agent's own error lines ("ota-agent: ..."),
not in its OTA-STATE lines. Devices run the agent once before the bad
release is offered (as a device in the field has); a refusal on the very
first run has a test of its own.

Covered here: malformed manifests (signed, so only the parser can refuse
them), bad signatures, a wrong device type, a downgrade and an unmet
min_version, a payload swapped on the server (checksum), an oversized and a
truncated download, packages with path traversal or escaping links, a full
disk while unpacking, and agent databases that are truncated or unreadable.
A corrupt download and a garbage database are in test_agent_e2e.py; a
corrupt boot env in test_agent_rootfs.py."""

import io
import json
import os
import shutil
import tarfile

import pytest

import otadev

def forge(root, src, rid, edit, keys):
    """A copy of release src as rid whose manifest.json edit(dict) changed,
    signed as it is (ota-pack sign --force) with keys."""
    out = os.path.join(root, rid)
    shutil.copytree(os.path.join(root, src), out)
    path = os.path.join(out, "manifest.json")
    with open(path) as f:
        m = json.load(f)
    edit(m)
    with open(path, "w") as f:
        f.write(json.dumps(m, separators=(",", ":")))
    otadev.run([otadev.pack_bin(), "sign", "--force", "--key", keys.priv, "--manifest", path])
    return out


def tar_package(path, entries):
    """A tar.gz of (name, kind, data-or-target) entries, written as given:
    Python's tarfile does not sanitize names or link targets."""
    with tarfile.open(path, "w:gz") as t:
        for name, kind, arg in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = 946684800
            if kind == "file":
                ti.size = len(arg)
                ti.mode = 0o644
                t.addfile(ti, io.BytesIO(arg))
            elif kind == "dir":
                ti.type = tarfile.DIRTYPE
                ti.mode = 0o755
                t.addfile(ti)
            elif kind == "symlink":
                ti.type = tarfile.SYMTYPE
                ti.linkname = arg
                t.addfile(ti)
            else:
                raise ValueError(kind)
    return path


def app_entries(version="2.0.0"):
    """The files of a real video-app release, so that a package fails only
    for what a test adds to it."""
    with open(otadev.app_bin("video-app-v2"), "rb") as f:
        binary = f.read()
    return [("VERSION", "file", f"{version}\n".encode()), ("bin", "dir", None),
            ("bin/video-app", "file", binary)]


@pytest.fixture(scope="module")
def world(make_world):
    w = make_world("bad-input")
    work = w["work"]
    os.makedirs(os.path.join(work, "other-key"))
    w["other"] = other = otadev.Keys(os.path.join(work, "other-key"))
    w["v1"] = otadev.make_package(work, "video-app", "1.0.0", "tar.gz")
    # Filler: the truncation test cuts every answer after 8 KiB and needs a
    # payload longer than three cuts; a Release build's is only ~11 KB.
    w["v2"] = v2 = otadev.make_package(work, "video-app-v2", "2.0.0", "deb", pad=32 << 10)
    old = otadev.make_package(work, "video-app", "0.9.0", "tar.gz")
    w.publish("v2", v2, "2.0.0")
    w.publish("v2-other-key", v2, "2.0.0", other)
    w.publish("v2-rpi4", v2, "2.0.0", device_types=("rpi4",))
    w.publish("v0.9.0", old, "0.9.0")
    w.publish("v2-min-1.5", v2, "2.0.0", extra=["--min-version", "1.5.0"])
    return w


@pytest.fixture
def device(world, make_device):
    def make(release=None, warm=True, check=True, **kw):
        """A device running 1.0.0 from slot a; warm: it ran the agent once
        (registered, nothing offered) before release is offered to it;
        check=False: release is one the server takes only unchecked."""
        kw.setdefault("agent_extra", {"max_attempts": "3"})
        return make_device(world, world["v1"], "bdev", release, warm=warm, check=check, **kw)

    return make


def said(r):
    """The agent's own error lines on stderr (its state lines left out)."""
    return "\n".join(l for l in r.stderr.splitlines() if not l.startswith("OTA-STATE "))


def assert_nothing_lost(world, dev, r, *whys):
    """Refused or failed with each of whys in the reason; slot a as it was."""
    assert r.returncode == 1, r.stderr
    for why in whys:
        assert why in said(r), f"{why!r} not in the agent's error:\n{r.stderr}"
    assert dev.current() == "a"
    assert otadev.tree_digest(os.path.join(dev.app_root, "a")) == dev.slot_a_digest
    assert dev.app_version()["version"] == "1.0.0"
    reps = world["server"].reports(dev.id)
    assert "success" not in [x["status"] for x in reps]
    finals = world["server"].final_reports(dev.id)
    assert [x["status"] for x in finals] == ["failure"]
    for why in whys:
        assert why in finals[0]["reason"], finals[0]
    st = dev.status()
    assert st["state"] == "IDLE" and st["app"] == {"version": "1.0.0", "slot": "a"}
    assert st["history"][0]["status"] == "failure"
    assert st["outbox"] == 0
    # Refused for good: the next pass does not take the same offer again.
    r2 = dev.agent("update")
    assert r2.returncode == 0, r2.stderr
    assert len(world["server"].final_reports(dev.id)) == 1
    assert dev.current() == "a"


def assert_not_installed(dev):
    """The inactive slot holds nothing of the refused release."""
    assert not os.path.exists(os.path.join(dev.app_root, "b", "VERSION"))
    assert not os.path.exists(os.path.join(dev.data, "download", "payload.part"))


# ---- refused at check time: nothing is downloaded ------------------------

MALFORMED = {
    "bad-version": (lambda m: m.update(version="two"), "bad version 'two'"),
    "unknown-kind": (lambda m: m.update(kind="firmware"), "unknown kind 'firmware'"),
    "no-sha256": (lambda m: m.pop("sha256"), "sha256"),
    "size-is-text": (lambda m: m.update(size=str(m["size"])), "size"),
    "unknown-field": (lambda m: m.update(exec="rm -rf /"), "unknown field 'exec'"),
    "kind-format-mismatch": (lambda m: m.update(kind="rootfs"), "does not fit kind"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_manifest_refused(world, device, name):
    edit, why = MALFORMED[name]
    rid = f"malformed-{name}"
    if not os.path.exists(os.path.join(world["root"], rid)):
        forge(world["root"], "v2", rid, edit, world["keys"])
    dev = device(rid, check=False)  # the server itself would refuse it
    r = dev.agent("update")
    assert_nothing_lost(world, dev, r, "release refused", why)
    assert_not_installed(dev)


def tamper(root, rid):
    """v2 with its manifest changed after signing (a bigger size)."""
    out = os.path.join(root, rid)
    shutil.copytree(os.path.join(root, "v2"), out)
    path = os.path.join(out, "manifest.json")
    with open(path) as f:
        text = f.read()
    m = json.loads(text)
    with open(path, "w") as f:
        f.write(text.replace(f'"size":{m["size"]}', f'"size":{m["size"] + 1}'))


def garbage_signature(root, rid):
    out = os.path.join(root, rid)
    shutil.copytree(os.path.join(root, "v2"), out)
    with open(os.path.join(out, "manifest.json.sig"), "w") as f:
        f.write("bm90IGEgc2lnbmF0dXJl\n")


@pytest.mark.parametrize("rid,make,why", [
    ("v2-other-key", None, "signature does not verify"),
    ("v2-tampered", tamper, "signature does not verify"),
    ("v2-garbage-sig", garbage_signature, "not 88"),
])
def test_bad_signature_refused(world, device, rid, make, why):
    if make and not os.path.exists(os.path.join(world["root"], rid)):
        make(world["root"], rid)
    dev = device(rid, check=False)
    r = dev.agent("update")
    assert_nothing_lost(world, dev, r, "release refused", why)
    assert_not_installed(dev)


@pytest.mark.parametrize("rid,why", [
    ("v2-rpi4", "not for device type 'rpi3b'"),
    ("v0.9.0", "release 0.9.0 is not newer than installed 1.0.0"),
    ("v2-min-1.5", "below the release's min_version 1.5.0"),
])
def test_release_not_for_this_device_refused(world, device, rid, why):
    dev = device(rid)
    r = dev.agent("update")
    assert_nothing_lost(world, dev, r, "release refused", why)
    assert_not_installed(dev)
    assert not any(d["path"].startswith(f"/api/v1/releases/{rid}/")
                   for d in world["server"].downloads())


# A new store is IDLE, not an error: its "no journal" must not hide the real reason.
def test_refusal_on_first_run_names_the_reason(world, device):
    dev = device("v2-rpi4", warm=False)
    r = dev.agent("update")
    assert r.returncode == 1, r.stderr
    assert "no journal" not in said(r)
    assert "release refused" in said(r) and "not for device type 'rpi3b'" in said(r)


# ---- bad downloads ------------------------------------------------------

def test_payload_swapped_on_server_checksum_mismatch(world, device):
    """The payload differs from the signed one, same size: every download
    hashes wrong, and nothing is installed."""
    rid = "v2-swapped"
    out = os.path.join(world["root"], rid)
    shutil.copytree(os.path.join(world["root"], "v2"), out)
    with open(os.path.join(out, "manifest.json")) as f:
        payload = os.path.join(out, json.load(f)["payload"])
    with open(payload, "r+b") as f:
        f.seek(4000)
        b = f.read(1)
        f.seek(4000)
        f.write(bytes([b[0] ^ 0x01]))
    dev = device(rid, check=False)
    r = dev.agent("update")
    assert_nothing_lost(world, dev, r, "checksum mismatch")
    assert_not_installed(dev)


def test_oversized_download_refused(world, device):
    """The server's payload has 1000 bytes more than the manifest says."""
    rid = "v2-oversized"
    out = os.path.join(world["root"], rid)
    shutil.copytree(os.path.join(world["root"], "v2"), out)
    with open(os.path.join(out, "manifest.json")) as f:
        m = json.load(f)
    with open(os.path.join(out, m["payload"]), "ab") as f:
        f.write(os.urandom(1000))
    dev = device(rid, check=False)
    r = dev.agent("update")
    assert_nothing_lost(world, dev, r, f"server sends {m['size'] + 1000} bytes", "attempt 3 of 3")
    assert_not_installed(dev)


def test_truncated_download_fails_after_max_attempts(world, device):
    """The server cuts every answer after 8 KiB: the agent resumes each time
    from where it is, never gets the whole payload, gives up after
    max_attempts, and the partial file is dropped."""
    dev = device("v2")
    # Three cuts fall inside the payload, whatever build made it.
    assert os.path.getsize(world["v2"]) > 3 * 8192
    n = len(world["server"].downloads())
    world["server"].faults([otadev.fault("truncate", "/api/v1/releases/v2/payload",
                                         after_bytes=8192)])
    try:
        r = dev.agent("update")
    finally:
        world["server"].faults([])
    assert_nothing_lost(world, dev, r, "attempt 3 of 3")
    assert_not_installed(dev)
    ranges = [d["range"] for d in world["server"].downloads()[n:]
              if d["path"].startswith("/api/v1/releases/v2/")]
    assert ranges == [None, "bytes=8192-", "bytes=16384-"]


# ---- hostile packages -----------------------------------------------------

def test_package_path_traversal_refused(world, device, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    cases = {
        "dotdot": ([("../../escaped-dotdot", "file", b"pwned")], "'..' in path"),
        "absolute": ([(str(outside / "escaped-abs"), "file", b"pwned")], "absolute path"),
        "abs-link": ([("bin/x", "symlink", str(outside)), ("bin/x/escaped-link", "file", b"p")],
                     "absolute symlink target"),
        "up-link": ([("share", "symlink", "../../.."), ("share/escaped-up", "file", b"p")],
                    "unsafe entry 'share'"),
        "through-link": ([("lib", "symlink", "bin"), ("lib/escaped-through", "file", b"p")],
                         "goes through symlink"),
    }
    for name, (evil, why) in cases.items():
        pkg = tar_package(os.path.join(world["work"], f"evil-{name}.tar.gz"),
                          app_entries() + evil)
        rid = f"evil-{name}-{tmp_path.name}"
        # ota-pack's default installed size counts only regular files.
        otadev.publish(world["root"], rid, pkg, "2.0.0", world["keys"])
        dev = device(rid)
        r = dev.agent("update")
        assert_nothing_lost(world, dev, r, "install into slot b failed", "unsafe entry", why)
        for d in (dev.dir, dev.app_root, str(outside), os.path.join(dev.app_root, "b")):
            for dirpath, _, files in os.walk(d):
                assert not [f for f in files if f.startswith("escaped")], (name, dirpath, files)
        assert not os.path.exists(os.path.join(dev.app_root, "b", "VERSION")), name


# ---- full disk while unpacking ---------------------------------------------

@pytest.fixture
def small_app_root(tmp_path):
    """App slots on a 3 MiB tmpfs (torn down after the device fixture)."""
    path = str(tmp_path / "small-app-root")
    if not otadev.mount_tmpfs(path, "3m"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield path
    otadev.umount(path)


def test_package_beyond_its_installed_size(world, small_app_root, device):
    # 4 MiB that do not compress, in a package whose signed manifest claims
    # 64 KiB installed: the agent's free-space check passes, and the unpack
    # stops at the claimed size, long before the 3 MiB disk would fill.
    blob = os.urandom(4 << 20)
    pkg = tar_package(os.path.join(world["work"], "huge.tar.gz"),
                      app_entries() + [("share", "dir", None), ("share/blob", "file", blob)])
    rid = "v2-huge-lied-small"
    if not os.path.exists(os.path.join(world["root"], rid)):
        otadev.publish(world["root"], rid, pkg, "2.0.0", world["keys"],
                       extra=["--installed-size", str(64 << 10)])
    dev = device(rid, app_root=small_app_root)
    free_before = shutil.disk_usage(small_app_root).free
    r = dev.agent("update")
    assert_nothing_lost(world, dev, r, "install into slot b failed",
                        "expands beyond its signed installed_size")
    # The half-unpacked slot was given back.
    assert not os.path.exists(os.path.join(dev.app_root, "b", "share", "blob"))
    assert shutil.disk_usage(small_app_root).free >= free_before - (64 << 10)


# ---- the agent's database ------------------------------------------------

def registered_device(world, device):
    """A device that ran once (registered, has a token and a database)."""
    dev = device()
    db = os.path.join(dev.data, "agent.db")
    assert os.path.getsize(db) > 8192
    return dev, db


def test_truncated_database_moved_aside_device_stays(world, device):
    """A registered device's database cut in half: moved aside as .broken,
    the device stays on slot a, registers again (its token was in the
    database: the server takes the enrollment token for a known id only
    after an admin's approval, docs/protocol.md "Register") and reports
    the failure."""
    dev, db = registered_device(world, device)
    with open(db, "r+b") as f:
        f.truncate(os.path.getsize(db) // 2)
    r = dev.agent("update")
    assert r.returncode != 0 and "registration refused: HTTP 409" in r.stderr, r.stderr
    assert "moved aside" in said(r) and "malformed" in said(r), r.stderr
    assert os.path.exists(db + ".broken")
    assert dev.status()["outbox"] == 1  # the failure report waits for a token
    world["server"].allow_reenroll(dev.id)
    r = dev.agent("update")
    assert r.returncode == 0, r.stderr
    assert dev.current() == "a"
    assert otadev.tree_digest(os.path.join(dev.app_root, "a")) == dev.slot_a_digest
    assert dev.app_version()["version"] == "1.0.0"
    st = dev.status()
    assert st["state"] == "IDLE" and st["app"] == {"version": "1.0.0", "slot": "a"}
    assert st["history"][0]["status"] == "failure"
    assert "moved aside" in st["history"][0]["reason"]
    assert st["outbox"] == 0
    reps = world["server"].reports(dev.id)
    assert "success" not in [x["status"] for x in reps]
    assert [x["status"] for x in reps if "moved aside" in x["reason"]] == ["failure"]


def test_unreadable_database_is_an_internal_error_nothing_moved(world, device):
    """A database path the agent cannot open at all (here a directory) says
    nothing about a database's contents: the agent stops with exit 5 and the
    path, and moves nothing aside (store_sqlite.c: moving a sound database
    aside would lose it). No report can go out without the device's token."""
    dev, db = registered_device(world, device)
    os.rename(db, db + ".saved")
    os.mkdir(db)
    n = len(world["server"].reports(dev.id))
    r = dev.agent("update")
    assert r.returncode == 5, r.stderr
    assert db in said(r) and "unable to open database file" in said(r)
    assert os.path.isdir(db) and not os.path.exists(db + ".broken")
    assert dev.current() == "a"
    assert otadev.tree_digest(os.path.join(dev.app_root, "a")) == dev.slot_a_digest
    assert dev.app_version()["version"] == "1.0.0"
    assert len(world["server"].reports(dev.id)) == n
    # Put back, the database is whole and the agent goes on as before.
    os.rmdir(db)
    os.rename(db + ".saved", db)
    r = dev.agent("update")
    assert r.returncode == 0, r.stderr
    assert "moved aside" not in r.stderr
