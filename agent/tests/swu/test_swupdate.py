"""ota-pack swu releases against the real swupdate (Debian 12's 2022.12, the
agent of issue 13): it accepts and installs what ota-pack builds, and refuses
a tampered image, a tampered sw-description, a foreign signature and the
wrong hardware. Needs OTA_BUILD_DIR with agent/pack/ota-pack."""

import os
import subprocess
import tarfile

import pytest

from swu_helpers import (BOARD, make_cert, members, need_tools, pack, read_env, repack, swupdate,
                         succeeded, swupdate_uboot, uboot_env)


@pytest.fixture
def world(tmp_path):
    need_tools()
    d = str(tmp_path)
    cert, key = make_cert(d, "signer")
    image = os.path.join(d, "rootfs.img")
    with open(image, "wb") as f:
        f.write(os.urandom(300_001))  # odd: the CPIO padding is exercised
    slots = [os.path.join(d, "slotA"), os.path.join(d, "slotB")]
    for s in slots:
        open(s, "wb").close()  # the raw handler writes into an existing "device"
    swu = os.path.join(d, "rootfs.swu")
    p = pack(swu, cert, key, image, extra=["--slot-a-device", slots[0], "--slot-b-device",
                                           slots[1]])
    assert p.returncode == 0, p.stderr
    return {"d": d, "cert": cert, "key": key, "image": image, "slots": slots, "swu": swu}


def read(path):
    with open(path, "rb") as f:
        return f.read()


def test_layout_and_signature_as_openssl_sees_them(world):
    d = os.path.join(world["d"], "x")
    assert members(world["swu"], d) == ["sw-description", "sw-description.sig", "rootfs.img"]
    err = subprocess.run(["cpio", "-i", "--only-verify-crc", "-H", "crc"],
                         stdin=open(world["swu"], "rb"), cwd=d, capture_output=True, text=True)
    assert "checksum error" not in err.stderr
    assert read(os.path.join(d, "rootfs.img")) == read(world["image"])
    desc = read(os.path.join(d, "sw-description")).decode()
    assert 'version = "1.2.3";' in desc and '"1.0"' in desc
    # A detached CMS signature that openssl verifies against the signer.
    v = subprocess.run(["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in",
                        os.path.join(d, "sw-description.sig"), "-content",
                        os.path.join(d, "sw-description"), "-CAfile", world["cert"],
                        "-purpose", "any", "-out", os.devnull], capture_output=True, text=True)
    assert v.returncode == 0, v.stderr


def test_check_mode_accepts(world):
    rc, log = swupdate(world["d"], world["swu"], world["cert"], "-c", "-e", "ota,b")
    assert rc == 0, log
    assert read(world["slots"][1]) == b""  # check mode writes nothing


def test_installs_into_the_inactive_slot_with_its_bootenv(world):
    rc, log = swupdate(world["d"], world["swu"], world["cert"], "-e", "ota,b")
    assert succeeded(rc, log), log
    assert read(world["slots"][1]) == read(world["image"])
    assert read(world["slots"][0]) == b""
    assert "Bootloader var: boot_part = B" in log
    assert "Bootloader var: upgrade_available = 1" in log
    assert "Bootloader var: bootcount = 0" in log
    assert "boot_part = A" not in log
    rc, log = swupdate(world["d"], world["swu"], world["cert"], "-e", "ota,a")
    assert succeeded(rc, log), log
    assert read(world["slots"][0]) == read(world["image"])
    assert "Bootloader var: boot_part = A" in log


def test_uboot_env_selects_the_new_slot_for_a_trial_boot(world):
    """With -B uboot, swupdate writes the A/B contract (ota/abboot.h) into
    the device's uboot.env: boot.cmd then boots slot B on trial."""
    env, cfg = uboot_env(world["d"], {"boot_part": "A", "bootcount": "0", "bootlimit": "3",
                                      "upgrade_available": "0"})
    got = swupdate_uboot(world["d"], world["swu"], world["cert"], cfg, "-e", "ota,b")
    if got is None:
        pytest.skip("no mount namespace here (unshare -m / -rm): cannot give swupdate its own "
                    "/etc/fw_env.config")
    rc, log = got
    assert succeeded(rc, log), log
    assert read(world["slots"][1]) == read(world["image"])
    values = read_env(cfg)
    assert values["boot_part"] == "B" and values["upgrade_available"] == "1", values
    assert values["bootcount"] == "0" and values["bootlimit"] == "3", values
    assert values.get("ustate") == "1", values  # SWUpdate's own: installed, not yet confirmed


def tampered(world, what):
    """A repack of the .swu with one member changed (same size), original sig."""
    d = os.path.join(world["d"], "t-" + what)
    names = members(world["swu"], d)
    path = os.path.join(d, what)
    data = bytearray(read(path))
    if what == "sw-description":
        at = data.index(b"slotB")
        data[at:at + 5] = b"slotA"  # the b mode would write slot A
    else:
        data[len(data) // 2] ^= 0xFF
    with open(path, "wb") as f:
        f.write(data)
    out = os.path.join(world["d"], f"t-{what}.swu")
    repack(d, names, out)
    return out


@pytest.mark.parametrize("what", ["rootfs.img", "sw-description"])
def test_refuses_a_tampered_member(world, what):
    swu = tampered(world, what)
    rc, log = swupdate(world["d"], swu, world["cert"], "-c", "-e", "ota,b")
    assert rc != 0, log
    rc, log = swupdate(world["d"], swu, world["cert"], "-e", "ota,b")
    assert rc != 0, log
    assert read(world["slots"][0]) == b"" and read(world["slots"][1]) == b""
    if what == "rootfs.img":
        assert "HASH mismatch" in log, log
    else:
        assert "Signature verification failed" in log, log


def test_refuses_a_foreign_signer(world):
    other_cert, other_key = make_cert(world["d"], "other")
    swu = os.path.join(world["d"], "other.swu")
    p = pack(swu, other_cert, other_key, world["image"],
             extra=["--slot-a-device", world["slots"][0], "--slot-b-device", world["slots"][1]])
    assert p.returncode == 0, p.stderr
    rc, log = swupdate(world["d"], swu, world["cert"], "-e", "ota,b")
    assert rc != 0 and "Authentication of all signatures failed" in log, log
    assert read(world["slots"][1]) == b""
    # the same file verifies with its own signer's certificate
    rc, log = swupdate(world["d"], swu, other_cert, "-c", "-e", "ota,b")
    assert rc == 0, log


def test_refuses_other_hardware(world):
    swu = os.path.join(world["d"], "hw2.swu")
    p = pack(swu, world["cert"], world["key"], world["image"], hw=["2.0"],
             extra=["--slot-a-device", world["slots"][0], "--slot-b-device", world["slots"][1]])
    assert p.returncode == 0, p.stderr
    rc, log = swupdate(world["d"], swu, world["cert"], "-e", "ota,b")
    assert rc != 0 and "SW not compatible with hardware" in log, log
    assert read(world["slots"][1]) == b""
    assert BOARD.endswith(":1.0")


def test_app_archive_is_unpacked_into_its_path(world):
    d = world["d"]
    src = os.path.join(d, "appsrc")
    os.makedirs(os.path.join(src, "bin"))
    with open(os.path.join(src, "bin", "video-app"), "w") as f:
        f.write("#!/bin/sh\necho v2\n")
    archive = os.path.join(d, "app.tar.gz")
    with tarfile.open(archive, "w:gz") as t:
        t.add(src, arcname=".")
    dest = os.path.join(d, "opt", "video-app")
    swu = os.path.join(d, "app.swu")
    p = pack(swu, world["cert"], world["key"], archive, kind="app", version="2.0.0",
             extra=["--app-path", dest])
    assert p.returncode == 0, p.stderr
    rc, log = swupdate(d, swu, world["cert"])
    assert succeeded(rc, log), log
    assert read(os.path.join(dest, "bin", "video-app")) == b"#!/bin/sh\necho v2\n"


@pytest.mark.parametrize("extra, reason", [
    (["--kind", "app"], "needs --app-path"),
    (["--slot-a-device", "/dev/x", "--slot-b-device", "/dev/x"], "the same device"),
    (["--slot-a-device", '/dev/"x'], "no quotes"),
    (["--name", "my os"], "release name 'my os': letters"),
])
def test_pack_refuses_bad_options(world, extra, reason):
    args = [world["cert"], world["key"], world["image"]]
    out = os.path.join(world["d"], "bad.swu")
    kind = "app" if "--kind" in extra else "rootfs"
    extra = [e for e in extra if e not in ("--kind", "app")]
    p = pack(out, *args, kind=kind, extra=extra)
    assert p.returncode != 0 and reason in p.stderr, p.stderr
    assert not os.path.exists(out)


def test_pack_refuses_a_key_of_another_cert(world):
    other_cert, _ = make_cert(world["d"], "other")
    out = os.path.join(world["d"], "bad.swu")
    p = pack(out, other_cert, world["key"], world["image"])
    assert p.returncode == 1 and "is not the private key of" in p.stderr, p.stderr
    assert not os.path.exists(out)
