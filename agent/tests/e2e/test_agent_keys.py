"""Release keys end to end (docs/DESIGN.md, "Release keys"): the real
ota-agent against the real ota-server. A key-rotation release made by
`ota-pack keys`, signed by the device's configured (old) key, trusts a new
key and revokes the old one; it is offered and installed like any release.
Then a release signed by the new key installs, and one signed by the
revoked old key is refused before any download, with "signed by revoked key
<id>" in the agent's error, its history and the server's report, the running
slot untouched. `ota-agent status` shows the keys trusted and revoked."""

import os

import pytest

import otadev


def key_id(keys):
    return otadev.run([otadev.pack_bin(), "keyid", "--public", keys.pub]).stdout.strip()


@pytest.fixture(scope="module")
def world(make_world):
    w = make_world("keys")
    work = w["work"]
    os.makedirs(os.path.join(work, "new-key"))
    w["new"] = new = otadev.Keys(os.path.join(work, "new-key"))
    w["v1"] = otadev.make_package(work, "video-app", "1.0.0", "tar.gz")
    v2 = otadev.make_package(work, "video-app-v2", "2.0.0", "tar.gz")
    v3 = otadev.make_package(work, "video-app-v2", "3.0.0", "tar.gz")
    v4 = otadev.make_package(work, "video-app-v2", "4.0.0", "tar.gz")
    # The rotation: ota-pack keys, signed by the old key, which it revokes.
    otadev.run([otadev.pack_bin(), "keys", "--key", w["keys"].priv, "--payload", v2,
                "--kind", "app", "--name", "video-app", "--version", "2.0.0",
                "--device-type", "rpi3b", "--out", os.path.join(w["root"], "rotate"),
                "--keyring-version", "1", "--add", new.pub, "--revoke", w["keys"].pub])
    w.publish("v3-new-key", v3, "3.0.0", new)
    w.publish("v4-old-key", v4, "4.0.0")
    return w


def test_rotation_then_new_key_installs_and_revoked_key_refused(world, make_device):
    srv = world["server"]
    dev = make_device(world, world["v1"], "kdev", "rotate", warm=True)

    old_id, new_id = key_id(world["keys"]), key_id(world["new"])
    assert dev.status()["keys"] == {"keyring": 0, "trusted": [old_id], "revoked": []}
    r = dev.agent("update")
    assert r.returncode == 0, r.stderr
    st = dev.status()
    assert st["app"] == {"version": "2.0.0", "slot": "b"}
    assert st["keys"] == {"keyring": 1, "trusted": [new_id], "revoked": [old_id]}
    text = dev.agent("status").stdout
    assert f"keys:     keyring 1; trusted {new_id}; revoked {old_id}" in text, text

    srv.offer("v3-new-key", device_id=dev.id)
    r = dev.agent("update")
    assert r.returncode == 0, r.stderr
    assert dev.status()["app"] == {"version": "3.0.0", "slot": "a"}
    slot_a = otadev.tree_digest(os.path.join(dev.app_root, "a"))

    srv.offer("v4-old-key", device_id=dev.id)
    r = dev.agent("update")
    why = f"signed by revoked key {old_id}"
    assert r.returncode == 1, r.stderr
    assert "release refused: " + why in r.stderr, r.stderr
    assert dev.current() == "a"
    assert otadev.tree_digest(os.path.join(dev.app_root, "a")) == slot_a
    st = dev.status()
    assert st["state"] == "IDLE" and st["app"] == {"version": "3.0.0", "slot": "a"}
    assert st["history"][0]["status"] == "failure" and why in st["history"][0]["reason"]
    finals = srv.final_reports(dev.id)
    assert [x["status"] for x in finals] == ["success", "success", "failure"]
    assert why in finals[-1]["reason"], finals[-1]
    assert not any(d["path"].startswith("/api/v1/releases/v4-old-key/") for d in srv.downloads())
