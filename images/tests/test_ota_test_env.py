"""images/rootfs/generators/ota-test-env, the QEMU driver's control channel
into the guest: kernel command-line arguments -> systemd drop-ins for the
agent and the app, and the agent's config with overrides. Run as systemd
would (generator OUTPUT_DIR), on a copy that reads a given command line and
config instead of /proc/cmdline and /etc/ota-agent.conf."""
import os
import subprocess

import pytest

SRC = os.environ.get("OTA_SOURCE_DIR",
                     os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
GEN = os.path.join(SRC, "images", "rootfs", "generators", "ota-test-env")
CONF = os.path.join(SRC, "images", "rootfs", "overlay", "etc", "ota-agent.conf")


def run(tmp_path, cmdline):
    (tmp_path / "cmdline").write_text(cmdline + "\n")
    text = open(GEN).read()
    text = text.replace("/proc/cmdline", str(tmp_path / "cmdline"))
    text = text.replace("/run/ota", str(tmp_path / "run"))
    text = text.replace("cat /etc/ota-agent.conf", "cat " + CONF)
    gen = tmp_path / "gen"
    gen.write_text(text)
    out = tmp_path / "out"
    subprocess.run(["sh", str(gen), str(out)], check=True)
    return out


def read(p):
    return p.read_text() if p.exists() else None


def test_nothing_asked_nothing_written(tmp_path):
    out = run(tmp_path, "console=ttyAMA0 root=/dev/mmcblk0p2 ota.slot=a")
    assert not out.exists() or not any(out.iterdir())
    assert not (tmp_path / "run").exists()


def test_env_conf_and_app_env(tmp_path):
    out = run(tmp_path, "console=ttyAMA0 ota.env=OTA_FAULT_POINT=state.SWITCHING "
                        "ota.env=OTA_FAULT_POINT_MODE=stop ota.conf=agent.device_id=sim-1 "
                        "ota.conf=health.window=1 ota.app_env=VIDEO_APP_BIND=0.0.0.0 ota.slot=b")
    agent = read(out / "ota-agent.service.d" / "50-ota-test-env.conf")
    assert 'Environment="OTA_FAULT_POINT=state.SWITCHING"' in agent
    assert 'Environment="OTA_FAULT_POINT_MODE=stop"' in agent
    # the agent runs with the generated config: ExecStart reset, then the new one
    assert "ExecStart=\nExecStart=/usr/bin/ota-agent --config %s/ota-agent.conf update" % (
        tmp_path / "run") in agent
    app = read(out / "video-app.service.d" / "50-ota-test-env.conf")
    assert 'Environment="VIDEO_APP_BIND=0.0.0.0"' in app
    conf = read(tmp_path / "run" / "ota-agent.conf")
    assert conf.startswith(open(CONF).read())  # the device's config, then the overrides
    assert conf.endswith("[agent]\ndevice_id = sim-1\n[health]\nwindow = 1\n")


@pytest.mark.parametrize("bad", ["ota.env=bad-name=1", "ota.env==x", "ota.conf=agent=x",
                                 "ota.conf=.x=1", "ota.conf=a.b.c=1", "ota.conf=Agent.x=1",
                                 "ota.app_env=a;b=1"])
def test_malformed_arguments_are_ignored(tmp_path, bad):
    out = run(tmp_path, "console=ttyAMA0 " + bad)
    assert not out.exists() or not any(out.iterdir()), bad
    assert not (tmp_path / "run").exists()
