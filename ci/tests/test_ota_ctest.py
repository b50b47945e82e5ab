"""The pytest plugin of the CTest entries (ci/pytest/ota_ctest.py): a skip is exit 77
(CTest: Skipped), with CI=true a failure; and a real CTest run shows the entry as Skipped."""
import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PLUGIN_DIR = os.path.join(os.path.dirname(HERE), "pytest")
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

PASSES = "def test_ok():\n    assert 1 + 1 == 2\n"
SKIPS = PASSES + ("import pytest\n"
                  "def test_needs_tool():\n    pytest.skip('frobnicate not installed')\n")
FAILS = SKIPS + "def test_bad():\n    assert 1 + 1 == 3\n"
EMPTY = ("import pytest\n"
         "@pytest.mark.parametrize('case', [])\ndef test_case(case):\n    pass\n")
MODULE_SKIP = ("import pytest\npytest.skip('no ota-sim here', allow_module_level=True)\n"
               "def test_never():\n    pass\n")
SKIPIF = PASSES + ("import pytest\n"
                   "@pytest.mark.skipif(True, reason='dpkg-deb not installed')\n"
                   "def test_deb():\n    pass\n")
EQUIVALENT = PASSES + ("import pytest\n"
                       "def test_point():\n    pytest.skip('equivalent to app-3 (same state)')\n")
FIXTURE_SKIP = PASSES + ("import pytest\n@pytest.fixture\ndef root():\n"
                         "    pytest.skip('cannot mount a tmpfs here (needs root)')\n"
                         "def test_full_disk(root):\n    pass\n")


def run_pytest(tmp_path, source, ci=None):
    test = tmp_path / "test_sample.py"
    test.write_text(source)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    env["PYTHONPATH"] = PLUGIN_DIR
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-p", "ota_ctest", str(test)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_all_passed_is_0(tmp_path):
    r = run_pytest(tmp_path, PASSES)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("source,reason", [
    (SKIPS, "frobnicate not installed"),
    (EMPTY, "got empty parameter set"),
    (MODULE_SKIP, "no ota-sim here"),
    (SKIPIF, "dpkg-deb not installed"),
    (FIXTURE_SKIP, "needs root"),
], ids=["skip-in-test", "empty-parameter-set", "module-skip", "skipif", "fixture-skip"])
def test_a_skip_is_77_and_says_why(tmp_path, source, reason):
    r = run_pytest(tmp_path, source)
    assert r.returncode == 77, r.stdout + r.stderr
    assert "did not run (not a pass)" in r.stdout, r.stdout
    assert reason in r.stdout, r.stdout


@pytest.mark.parametrize("source,reason", [
    (SKIPS, "frobnicate not installed"),
    (EMPTY, "got empty parameter set"),
    (MODULE_SKIP, "no ota-sim here"),
    (SKIPIF, "dpkg-deb not installed"),
    (FIXTURE_SKIP, "needs root"),
], ids=["skip-in-test", "empty-parameter-set", "module-skip", "skipif", "fixture-skip"])
def test_with_ci_a_skip_fails(tmp_path, source, reason):
    r = run_pytest(tmp_path, source, ci="true")
    assert r.returncode not in (0, 77), r.stdout + r.stderr
    assert "CI=true" in r.stdout and reason in r.stdout, r.stdout


def test_a_failure_keeps_its_status(tmp_path):
    r = run_pytest(tmp_path, FAILS)
    assert r.returncode == 1, r.stdout + r.stderr


def test_ci_false_is_not_ci(tmp_path):
    r = run_pytest(tmp_path, SKIPS, ci="false")
    assert r.returncode == 77, r.stdout + r.stderr


def test_answered_elsewhere_is_listed_not_a_gap(tmp_path):
    for ci in (None, "true"):
        r = run_pytest(tmp_path, EQUIVALENT, ci=ci)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "ANSWERED ELSEWHERE" in r.stdout and "equivalent to app-3" in r.stdout, r.stdout


@pytest.mark.skipif(not shutil.which("cmake") or not shutil.which("ctest"),
                    reason="cmake/ctest not installed")
def test_ctest_summary_shows_the_skip(tmp_path):
    """Through CTest as the project registers its pytest entries (SKIP_RETURN_CODE 77):
    the entry with a skip is listed as not run, the clean one as passed, and with CI=true
    the skipping entry fails."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "test_skips.py").write_text(SKIPS)
    (src / "test_passes.py").write_text(PASSES)
    (src / "CMakeLists.txt").write_text(textwrap.dedent(f"""\
        cmake_minimum_required(VERSION 3.25)
        project(skipdemo NONE)
        enable_testing()
        set(PYTEST ${{CMAKE_COMMAND}} -E env PYTHONPATH={PLUGIN_DIR}
            {PYTHON} -m pytest -q -p no:cacheprovider -p ota_ctest)
        foreach(t skips passes)
          add_test(NAME pytest-${{t}} COMMAND ${{PYTEST}} ${{CMAKE_SOURCE_DIR}}/test_${{t}}.py)
          set_tests_properties(pytest-${{t}} PROPERTIES SKIP_RETURN_CODE 77)
        endforeach()
        """))
    build = tmp_path / "build"
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    subprocess.run(["cmake", "-S", str(src), "-B", str(build)], check=True, env=env,
                   capture_output=True, timeout=120)
    r = subprocess.run(["ctest", "--test-dir", str(build)], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout  # a skip is not a failure...
    assert re.search(r"Test +#\d+: pytest-passes \.+ +Passed", r.stdout), r.stdout
    assert re.search(r"Test +#\d+: pytest-skips \.+\*+Skipped", r.stdout), r.stdout  # not a pass
    assert "The following tests did not run" in r.stdout and "pytest-skips (Skipped)" in r.stdout
    r = subprocess.run(["ctest", "--test-dir", str(build)], env={**env, "CI": "true"},
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0, r.stdout
    assert "pytest-skips (Failed)" in r.stdout, r.stdout
