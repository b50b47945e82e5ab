"""ci/check-layers: each layer rule, shown failing on a small tree, and the
repository passing."""
import os
import subprocess

import pytest

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "check-layers")


def run(root):
    return subprocess.run([SCRIPT, "--root", str(root)], capture_output=True, text=True)


def tree(tmp_path, files):
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return tmp_path


CLEAN = {
    "common/src/json.c": '#include "ota/json.h"\n#include <jansson.h>\n',
    "agent/src/core/core.c": '#include "ota/core.h"\n#include "ota/json.h"\n#include <string.h>\n',
    "agent/src/drivers/transport_curl.c": '#include "ota/drivers.h"\n#include <curl/curl.h>\n',
    "agent/tests/unit/test_archive.cc": "#include <archive.h>\n",
    "server-mock/src/store.c": '#include "otasrv/store.h"\n#include "ota/json.h"\n',
    "sim/src/fleet.c": '#include "otasim/sim.h"\n#include "ota/core.h"\n',
}


def test_the_repository_keeps_its_layers():
    r = subprocess.run([SCRIPT], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def test_a_clean_tree_passes(tmp_path):
    r = run(tree(tmp_path, CLEAN))
    assert r.returncode == 0, r.stdout


@pytest.mark.parametrize("rel,text,rule", [
    ("common/src/fsutil.c", '#include "ota/core.h"\n', "common depends on nothing of ours"),
    ("common/src/x.c", '#include "otasim/sim.h"\n', "common depends on nothing of ours"),
    ("agent/src/core/core.c", '#include "ota/drivers.h"\n', "the agent core includes no driver"),
    ("agent/src/core/core.c", "#include <curl/curl.h>\n", "names no foreign library"),
    ("agent/src/core/core.c", "#include <libuboot.h>\n", "names no foreign library"),
    ("agent/src/core/core.c", '#include "ota/curlerr.h"\n', "the agent core includes no driver"),
    ("agent/src/cli/cli.c", '#include "otasrv/store.h"\n', "the agent depends on common"),
    ("server-mock/src/api.c", '#include "ota/core.h"\n', "the server depends on common"),
    ("sim/src/runner.c", '#include "ota/drivers.h"\n', "the simulator depends on common"),
    ("sim/src/runner.c", '#include "otasrv/store.h"\n', "the simulator depends on common"),
    ("server-mock/src/api_device.c", "#include <microhttpd.h>\n", "one adapter per foreign library"),
    ("agent/src/cli/cli.c", "#include <sqlite3.h>\n", "one adapter per foreign library"),
    ("sim/src/fast.c", "#include <curl/curl.h>\n", "one adapter per foreign library"),
])
def test_each_rule_fails_when_broken(tmp_path, rel, text, rule):
    files = dict(CLEAN)
    files[rel] = files.get(rel, "") + "\n" + text
    r = run(tree(tmp_path, files))
    assert r.returncode == 1, r.stdout
    assert rel in r.stdout and rule in r.stdout, r.stdout
