"""The fixtures the agent's end-to-end tests share: a world (keys, a
directory of releases, the real ota-server) made by make_world, and devices
made by make_device. Each test module has its own world and its own ids."""

import itertools
import os

import pytest

import otadev


class World(dict):
    """work (a directory), root (release directories, as otadev.publish
    writes them), keys, server (an otadev.Server over root); a dict, so a
    module keeps what it makes (packages, images) in it too."""

    def __init__(self, tmp_path_factory, name):
        work = str(tmp_path_factory.mktemp(name))
        root = os.path.join(work, "root")
        os.makedirs(root)
        super().__init__(work=work, root=root, keys=otadev.Keys(work))
        self.servers = []
        self["server"] = self.new_server()

    def publish(self, release_id, payload, version, keys=None, **kw):
        return otadev.publish(self["root"], release_id, payload, version, keys or self["keys"],
                              **kw)

    def new_server(self, **kw):
        """Another ota-server over the same releases (its own database);
        kw as otadev.Server's (extra, tls)."""
        d = os.path.join(self["work"], f"server-{len(self.servers)}")
        os.makedirs(d)
        srv = otadev.Server(self["root"], d, **kw)
        self.servers.append(srv)
        return srv

    def close(self):
        for srv in self.servers:
            srv.stop()


@pytest.fixture(scope="module")
def make_world(tmp_path_factory):
    worlds = []

    def make(name):
        w = World(tmp_path_factory, name)
        worlds.append(w)
        return w

    yield make
    for w in worlds:
        w.close()


_ids = itertools.count(1)


@pytest.fixture
def make_device(tmp_path):
    """make_device(world, initial, prefix="dev", release=None, warm=False,
    check=True, **Device kwargs): a device running the initial package from
    slot a, with a fresh id; warm: it ran the agent once (registered,
    nothing offered) before release is offered to it (check: as
    Server.offer). slot_a_digest is slot a's tree as it was then."""
    devs = []

    def make(world, initial, prefix="dev", release=None, warm=False, check=True, **kw):
        dev_id = f"{prefix}-{next(_ids):04d}"
        d = otadev.Device(str(tmp_path / dev_id), world["server"], world["keys"], initial,
                          device_id=dev_id, **kw)
        devs.append(d)
        if warm:
            r = d.agent("update")
            assert r.returncode == 0, r.stderr
        d.slot_a_digest = otadev.tree_digest(os.path.join(d.app_root, "a"))
        if release:
            world["server"].offer(release, device_id=dev_id, check=check)
        return d

    yield make
    for d in devs:
        d.stop()
