"""images/bench-card's bad input: clear errors before anything boots. The last case
builds a real (tiny) card with an MBR and a FAT partition holding an initramfs whose
/init has no line for the hook, as an initramfs from another tree would be: the script
must say so and leave no work dir behind, not boot an image it could not change."""
import glob
import gzip
import os
import shutil
import subprocess

import pytest

SRC = os.environ.get("OTA_SOURCE_DIR",
                     os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
SCRIPT = os.path.join(SRC, "images", "bench-card")


def run(*args):
    return subprocess.run(["bash", SCRIPT, *args], capture_output=True, text=True, timeout=60)


def test_a_dir_without_an_image_is_named(tmp_path):
    r = run("--dir", str(tmp_path))
    assert r.returncode == 1, r
    assert "bench-card: %s has no sd.img (a build-image output dir)" % tmp_path in r.stderr, r.stderr


@pytest.mark.parametrize("passes", ["0", "x", ""])
def test_passes_must_be_a_positive_count(tmp_path, passes):
    r = run("--dir", str(tmp_path), "--passes", passes)
    assert r.returncode == 2, r
    assert "bench-card: --passes N (N >= 1)" in r.stderr, r.stderr


def test_an_init_without_the_hook_line_is_refused(tmp_path):
    for tool in ("sfdisk", "mkfs.vfat", "mcopy", "cpio", "qemu-img"):
        if not shutil.which(tool):
            pytest.skip("%s missing (images/install-deps)" % tool)
    # The initramfs: one /init that switches root without unmounting first.
    ird = tmp_path / "ird"
    ird.mkdir()
    (ird / "init").write_text("#!/bin/sh\nexec switch_root /newroot /sbin/init\n")
    newc = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=ird, input=b"init\n",
                          capture_output=True, check=True).stdout
    (tmp_path / "initrd.img").write_bytes(gzip.compress(newc))
    # The card: 4 MiB, partition 1 (FAT) from 1 MiB, as build-image lays it out.
    img = tmp_path / "img"
    img.mkdir()
    card = img / "sd.img"
    with open(card, "wb") as f:
        f.truncate(4 << 20)
    subprocess.run(["sfdisk", "-q", str(card)], input="start=2048, size=6144, type=c\n",
                   text=True, check=True)
    fat = tmp_path / "p1.img"
    subprocess.run(["mkfs.vfat", "-C", str(fat), "3072"], capture_output=True, check=True)
    subprocess.run(["mcopy", "-i", str(fat), str(tmp_path / "initrd.img"), "::/initrd.img"],
                   check=True)
    with open(card, "r+b") as f:
        f.seek(1 << 20)
        f.write(fat.read_bytes())
    for name in ("u-boot.bin", "bcm2837-rpi-3-b.dtb"):
        (img / name).write_bytes(b"\0")
    before = set(glob.glob("/dev/shm/ota-bench-card.*") + glob.glob("/tmp/ota-bench-card.*"))
    r = run("--dir", str(img))
    assert r.returncode == 1, r
    assert "no 'umount /proc /sys /dev' line to hook" in r.stderr, r.stderr
    assert "run-qemu" not in r.stdout + r.stderr
    after = set(glob.glob("/dev/shm/ota-bench-card.*") + glob.glob("/tmp/ota-bench-card.*"))
    assert after <= before, after - before
