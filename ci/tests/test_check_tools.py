"""ci/check-tools: fails when a program that the sources call comes from a package that no
install script names, passes when the package is named; the real tree passes."""
import os
import re
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
TOOL = os.path.join(SRC, "ci", "check-tools")
SCRIPTS = ["ci/install-deps", "images/install-deps", "images/rootfs/install-deps"]


def check(*args):
    return subprocess.run([TOOL, *args], capture_output=True, text=True, timeout=300)


def test_the_tree_passes():
    r = check("-v")
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"named: qemu-utils", r.stdout), r.stdout  # a program of the QEMU tier


def copies(tmp_path, drop):
    """The three install scripts, with the word `drop` removed from their package lists."""
    out = []
    for s in SCRIPTS:
        text = open(os.path.join(SRC, s)).read()
        dst = tmp_path / s.replace("/", "_")
        dst.write_text(re.sub(rf"(?<=[\s(]){re.escape(drop)}(?=[\s)])", "", text))
        out += ["--install-script", str(dst)]
    return out


@pytest.mark.parametrize("package,program", [("socat", "socat"), ("strace", "strace"),
                                             ("qemu-utils", "qemu-img"), ("mtools", "mcopy")])
def test_a_package_left_out_fails(tmp_path, package, program):
    r = check(*copies(tmp_path, package))
    assert r.returncode == 1, r.stdout + r.stderr
    assert re.search(rf"MISSING {re.escape(program)}: \S+ is in package {re.escape(package)}\b",
                     r.stdout), r.stdout


def tree(tmp_path, files, packages):
    for name, text in files.items():
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        p.chmod(0o755)
    (tmp_path / "ci").mkdir(exist_ok=True)
    (tmp_path / "ci" / "install-deps").write_text(f"PKGS=({' '.join(packages)})\n")
    return ["--root", str(tmp_path), "--install-script", str(tmp_path / "ci" / "install-deps"),
            "--no-extra"]


CALLERS = {
    "shell": {"ci/tool": "#!/bin/sh\nset -e\nx=1 socat -V | head -1\n"},
    "shell-array": {"images/tool": "#!/usr/bin/env bash\nsc=(socat -d)\n\"${sc[@]}\" -V\n"},
    "python": {"agent/tests/e2e/test_x.py":
               "import subprocess\nsubprocess.run(['socat', '-V'], check=True)\n"},
    "c": {"sim/src/x.c": "static const char *argv[] = {\"socat\", \"-V\", 0};\n"},
}


@pytest.mark.parametrize("kind", sorted(CALLERS))
def test_a_call_is_found_in_the_sources(tmp_path, kind):
    args = tree(tmp_path, CALLERS[kind], ["curl"])
    r = check(*args)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "MISSING socat:" in r.stdout and list(CALLERS[kind])[0] in r.stdout, r.stdout
    args = tree(tmp_path, CALLERS[kind], ["curl", "socat"])
    r = check(*args)
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_program_that_is_not_there_fails(tmp_path):
    # Split so that check-tools, reading this file, does not take it for a call.
    args = tree(tmp_path, {"scenarios/t.py": "import shutil\nshutil.which" + "('no-such-tool-x')\n"},
                ["curl"])
    r = check(*args)
    assert r.returncode == 1 and "MISSING no-such-tool-x: not found" in r.stdout, r.stdout


def test_no_package_list_is_an_error(tmp_path):
    (tmp_path / "empty").write_text("echo nothing\n")
    r = check("--install-script", str(tmp_path / "empty"))
    assert r.returncode != 0 and "no package list" in r.stderr, r.stdout + r.stderr


def test_a_comment_with_a_parenthesis_does_not_end_the_list(tmp_path):
    # A ")" in a comment ended the list early: every package after it counted as not named.
    files = {"ci/tool": "#!/bin/sh\nset -e\nsocat -V\n"}
    args = tree(tmp_path, files, ["curl"])
    (tmp_path / "ci" / "install-deps").write_text(
        "PKGS=(\n  curl # the client (for downloads)\n  socat\n)\n")
    r = check(*args)
    assert r.returncode == 0, r.stdout + r.stderr
    # Added to the list later (PKGS+=): named too.
    (tmp_path / "ci" / "install-deps").write_text(
        "PKGS=(curl)\ncommand -v x >/dev/null || PKGS+=(socat)\n")
    r = check(*args)
    assert r.returncode == 0, r.stdout + r.stderr
