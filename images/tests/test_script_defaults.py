"""Where images/bench-boot and images/smoke-update look for the host build when
OTA_BUILD is not set: the build `make` makes (build/), as a fresh clone has it
after `make`; when it is missing, an error that names the file, the directory
and the make target. Each script runs from a copy in an empty tree, so it
stops at that check: nothing is built and nothing boots. And make bench-qemu
(sim/bench/bench-qemu) gives bench-boot its own build."""
import importlib.machinery
import importlib.util
import os
import shutil
import stat
import subprocess

import pytest

SRC = os.environ.get("OTA_SOURCE_DIR",
                     os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
CONF = os.path.join("rootfs", "overlay", "etc", "ota-agent.conf")


def tree(tmp_path, script):
    """tmp_path/images/<script> and the config it reads: a clone with nothing built."""
    images = tmp_path / "images"
    (images / os.path.dirname(CONF)).mkdir(parents=True)
    shutil.copy(os.path.join(SRC, "images", script), images / script)
    shutil.copy(os.path.join(SRC, "images", CONF), images / CONF)
    return images / script


def run(path, **env):
    e = {k: v for k, v in os.environ.items() if not k.startswith("OTA_")}
    e.update(env)
    return subprocess.run(["bash", str(path)], env=e, capture_output=True, text=True, timeout=60)


def fake_exe(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 1\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.mark.parametrize("script", ["bench-boot", "smoke-update"])
def test_default_is_the_make_build_and_the_error_names_make(tmp_path, script):
    r = run(tree(tmp_path, script))
    assert r.returncode == 1, r
    want = "%s: missing %s/build/server-mock/ota-server: run `make` (builds build/)" % (
        script, tmp_path)
    assert want in r.stderr, r.stderr
    assert "build-lead" not in r.stderr + r.stdout


@pytest.mark.parametrize("script", ["bench-boot", "smoke-update"])
def test_ota_build_still_chooses_the_build(tmp_path, script):
    other = tmp_path / "elsewhere"
    r = run(tree(tmp_path, script), OTA_BUILD=str(other))
    assert r.returncode == 1, r
    assert "missing %s/server-mock/ota-server" % other in r.stderr, r.stderr


def test_smoke_update_names_make_image_for_the_aarch64_build(tmp_path):
    path = tree(tmp_path, "smoke-update")
    fake_exe(tmp_path / "build" / "server-mock" / "ota-server")
    fake_exe(tmp_path / "build" / "agent" / "pack" / "ota-pack")
    r = run(path)
    assert r.returncode == 1, r
    want = "smoke-update: missing %s/build-aarch64/agent/video-app/video-app-v2: run `make image`" % (
        tmp_path)
    assert want in r.stderr, r.stderr


def test_bench_qemu_gives_bench_boot_its_build(monkeypatch):
    monkeypatch.delenv("OTA_BUILD_DIR", raising=False)
    monkeypatch.setenv("OTA_SOURCE_DIR", SRC)
    path = os.path.join(SRC, "sim", "bench", "bench-qemu")
    loader = importlib.machinery.SourceFileLoader("bench_qemu", path)
    spec = importlib.util.spec_from_loader("bench_qemu", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    # ci/bench-qemu (make bench-qemu) builds build-bench/ and runs bench-qemu in it
    assert mod.bench_boot_env()["OTA_BUILD"] == os.path.join(SRC, "build-bench")
