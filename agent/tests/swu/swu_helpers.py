"""Helpers of the SWUpdate release tests: certificates made with openssl(1),
ota-pack swu runs, GNU cpio repacks and the real swupdate (Debian 12's
2022.12) run in a private TMPDIR."""

import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
import otadev  # noqa: E402

SWUPDATE = "/usr/bin/swupdate"
BOARD = "ota:1.0"  # swupdate -H: board ota, revision 1.0


def need_tools():
    for tool in (SWUPDATE, shutil.which("cpio"), shutil.which("openssl")):
        if not tool or not os.path.exists(tool):
            pytest.skip("swupdate, cpio and openssl are needed (ci/install-deps)")


def make_cert(d, name, eku="emailProtection"):
    """(cert, key) PEM files: a self-signed signer, as swupdate -k takes it."""
    cert, key = os.path.join(d, f"{name}.crt"), os.path.join(d, f"{name}.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "365", "-subj", f"/CN={name}",
                    "-addext", f"extendedKeyUsage={eku}"],
                   check=True, capture_output=True)
    return cert, key


def pack(out, cert, key, image, kind="rootfs", version="1.2.3", hw=("1.0",), extra=()):
    args = [otadev.pack_bin(), "swu", "--cert", cert, "--key", key, "--kind", kind,
            "--image", image, "--name", "board-os" if kind == "rootfs" else "video-app",
            "--version", version, "--out", out] + list(extra)
    for h in hw:
        args += ["--hw-compat", h]
    return subprocess.run(args, capture_output=True, text=True)


def members(swu, d):
    """Unpacks swu with GNU cpio into directory d; the member names in order."""
    os.makedirs(d, exist_ok=True)
    listing = subprocess.run(["cpio", "-it", "-H", "crc"], stdin=open(swu, "rb"),
                             capture_output=True, text=True, check=True)
    subprocess.run(["cpio", "-id", "-H", "crc"], stdin=open(swu, "rb"), cwd=d,
                   capture_output=True, check=True)
    return listing.stdout.split()


def repack(d, names, out):
    """A .swu of d's files, in this order, made by GNU cpio (crc)."""
    subprocess.run(["cpio", "-o", "-H", "crc"], input="\n".join(names) + "\n", text=True,
                   cwd=d, stdout=open(out, "wb"), stderr=subprocess.DEVNULL, check=True)


def swupdate(tmp, swu, cert, *args):
    """The real swupdate on swu; (exit status, log). Its sockets and scratch
    files go to a TMPDIR of its own."""
    scratch = os.path.join(tmp, "swupdate-tmp")
    os.makedirs(scratch, exist_ok=True)
    env = dict(os.environ, TMPDIR=scratch)
    p = subprocess.run([SWUPDATE, "-i", swu, "-k", cert, "-H", BOARD, "-v"] + list(args),
                       env=env, capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout + p.stderr
