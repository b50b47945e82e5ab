"""Helpers of the SWUpdate release tests: certificates made with openssl(1),
ota-pack swu runs, GNU cpio repacks and the real swupdate (Debian 12's
2022.12) run in a private TMPDIR."""

import os
import signal
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
    # In a session of its own, so that a timeout kills its whole process group:
    # swupdate forks helpers with its own command line (a CI run once left one
    # asleep for an hour after the timeout killed only the parent).
    p = subprocess.Popen([SWUPDATE, "-i", swu, "-k", cert, "-H", BOARD, "-v"] + list(args),
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=60)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        # Seen on a fresh machine: after refusing an image ("SW not compatible
        # with hardware", then "swupdate_image_write failed: Connection reset
        # by peer") swupdate -i sometimes never exits. Killed; 124 with what
        # it said, so a refusal still shows as one and an install as a failure.
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        return 124, out + err + "\n[swupdate did not exit in 60 s: killed]"
    return rc, out + err


def uboot_env(tmp, values):
    """A U-Boot env image (mkenvimage, 16 KiB) and an fw_env.config naming it."""
    txt, env = os.path.join(tmp, "env.txt"), os.path.join(tmp, "uboot.env")
    with open(txt, "w") as f:
        f.write("".join(f"{k}={v}\n" for k, v in values.items()))
    subprocess.run(["mkenvimage", "-s", "0x4000", "-o", env, txt], check=True)
    cfg = os.path.join(tmp, "fw_env.config")
    with open(cfg, "w") as f:
        f.write(f"{env} 0x0 0x4000\n")
    return env, cfg


def read_env(cfg):
    out = subprocess.run(["fw_printenv", "-c", cfg], capture_output=True, text=True, check=True)
    return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)


def private_etc(tmp, cfg):
    """tmp/etc: a small copy of the host's /etc plus fw_env.config = cfg
    (made once per tmp: a later call only changes fw_env.config)."""
    etc = os.path.join(tmp, "etc")
    if not os.path.isdir(etc):
        os.makedirs(etc)
        for name in ("passwd", "group", "nsswitch.conf", "hosts", "localtime", "ssl"):
            src = os.path.join("/etc", name)
            if os.path.isdir(src):
                shutil.copytree(src, os.path.join(etc, name), symlinks=True)
            elif os.path.exists(src):
                shutil.copy(src, etc)
    shutil.copy(cfg, os.path.join(etc, "fw_env.config"))
    return etc


def in_private_etc(tmp, cfg):
    """The command prefix that runs a command in a mount namespace of its
    own whose /etc is private_etc(tmp, cfg) (swupdate -B uboot reads the
    fixed path /etc/fw_env.config); the host's /etc is not touched. None if
    no mount namespace can be made here."""
    etc = private_etc(tmp, cfg)
    inner = ("mount --make-rprivate / && mount --bind \"$0\" /etc && exec \"$@\"")
    for unshare in (["unshare", "-m"], ["unshare", "-rm"]):
        probe = subprocess.run(unshare + ["sh", "-c", "mount --make-rprivate /"],
                               capture_output=True)
        if probe.returncode == 0:
            return unshare + ["sh", "-c", inner, etc]
    return None


def swupdate_uboot(tmp, swu, cert, cfg, *args, prefix=()):
    """swupdate -B uboot -i swu in_private_etc(tmp, cfg): (exit status, log),
    or None if no mount namespace can be made here. prefix: a command that
    runs swupdate (e.g. env LD_PRELOAD=... for the interposer, which must not
    be loaded by unshare or sh). swupdate runs in a session of its own: a
    power cut of the interposer kills its process group, never the test's."""
    ns = in_private_etc(tmp, cfg)
    if ns is None:
        return None
    scratch = os.path.join(tmp, "swupdate-tmp")
    os.makedirs(scratch, exist_ok=True)
    cmd = list(prefix) + [SWUPDATE, "-B", "uboot", "-i", swu, "-k", cert, "-H", BOARD, "-v"] + list(args)
    p = subprocess.run(ns + cmd, capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, TMPDIR=scratch), start_new_session=True)
    return p.returncode, p.stdout + p.stderr


def succeeded(rc, log):
    """swupdate -i finished its install. Debian's 2022.12 sometimes exits 1
    after "SWUpdate was successful" (seen with the app .swu: its helper
    process exits 1 when signalled at exit, docs/swupdate.md): a 1 with that
    line and no error line counts as success; anything else does not."""
    if rc == 0:
        return True
    return rc == 1 and "SWUpdate was successful" in log and "[ERROR]" not in log
