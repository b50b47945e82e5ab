"""The words ota-sim takes as a QEMU guest without its network (the verdict
environment, sim/src/qenv.c): images/rootfs/overlay/usr/lib/ota/net-static, the
image's network service, run on a copy that reads a given /proc/net/route and
/sys/class/net and does not sleep: with no NIC it prints the line the
classifier looks for (OTASIM_QENV_NET_LOST in sim/include/otasim/qenv.h);
with one it prints no such line."""
import os
import re
import subprocess

SRC = os.environ.get("OTA_SOURCE_DIR",
                     os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
SCRIPT = os.path.join(SRC, "images", "rootfs", "overlay", "usr", "lib", "ota", "net-static")
QENV_H = os.path.join(SRC, "sim", "include", "otasim", "qenv.h")


def marker():
    m = re.search(r'#define OTASIM_QENV_NET_LOST "([^"]+)"', open(QENV_H).read())
    assert m, "OTASIM_QENV_NET_LOST not found in qenv.h"
    return m.group(1)


def run(tmp_path, nics):
    route = tmp_path / "route"
    route.write_text("Iface\tDestination\tGateway\n")  # no default route yet
    net = tmp_path / "net"
    net.mkdir()
    for n in nics:
        (net / n).mkdir()
    text = open(SCRIPT).read()
    text = text.replace("/proc/net/route", str(route)).replace("/sys/class/net", str(net))
    text = text.replace("sleep 0.1", ":")
    # no ip(8) here: a stand-in that does nothing
    text = text.replace("\nip ", "\ntrue ")
    script = tmp_path / "net-static"
    script.write_text(text)
    return subprocess.run(["sh", str(script)], capture_output=True, text=True, timeout=30)


def test_no_nic_prints_the_evidence(tmp_path):
    r = run(tmp_path, [])
    assert r.returncode == 1
    assert marker() in r.stderr, r.stderr


def test_a_nic_prints_no_evidence(tmp_path):
    r = run(tmp_path, ["usb0"])
    assert r.returncode == 0, r.stderr
    assert marker() not in r.stdout + r.stderr
    assert "ota-net: usb0 10.0.2.15/24" in r.stdout
