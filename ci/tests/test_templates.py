"""ci/templates/: the GitHub Actions workflow and the GitLab CI file that teams copy.

Both are parsed as YAML and their structure checked; the commands of their native job (the
scenarios, the state x fault matrix, the verdict) are run here, exactly as written, against
this checkout and its build, with a small seeded sample instead of the CI default; then the
artifacts and JUnit reports they name must exist (JUnit parses, the HTML report is there). The
setup commands (install-deps: root and the network; the builds: this build is used) are not
run: their targets must exist in this build. The QEMU job is not booted: its scripts, scenario
files and targets must exist, and its scenarios must be the CTest smoke set.

    OTA_BUILD_DIR=build /usr/bin/python3 -m pytest -q ci/tests/test_templates.py
"""
import ast
import fnmatch
import glob
import os
import re
import subprocess
import xml.etree.ElementTree as ET

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
BUILD = os.path.abspath(os.environ.get("OTA_BUILD_DIR", os.path.join(SRC, "build")))
SIM = os.path.join(BUILD, "sim", "ota-sim")
TEMPLATES = os.path.join(SRC, "ci", "templates")

# The GitHub steps (by id) that set up, and are not run here; the ones that run.
SETUP = {"deps", "harness", "agent", "image"}
NATIVE = ["scenarios", "matrix", "verdict"]
QEMU = ["image", "smoke", "verdict"]
# The small sample of the test (the templates' defaults run every scenario and case).
SAMPLE = {"OTA_SCENARIOS": "ota-hil/scenarios/app-update-good.yaml "
                           "ota-hil/scenarios/power-loss-switching.yaml "
                           "ota-hil/scenarios/matrix.yaml",
          "OTA_MATRIX_SAMPLE": "4", "OTA_SEED": "7"}
# How both CI systems run a script: bash, stop at the first failing command.
BASH = ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c"]

needs_build = pytest.mark.skipif(not os.access(SIM, os.X_OK),
                                 reason="no ota-sim in %s: build the ota-sim-harness target" % BUILD)


def load(name):
    with open(os.path.join(TEMPLATES, name), encoding="utf-8") as f:
        return yaml.safe_load(f)


GH = load("github-actions.yml")
GL = load("gitlab-ci.yml")


def gh_run(job, sid):
    steps = [s for s in GH["jobs"][job]["steps"] if s.get("id") == sid]
    assert len(steps) == 1, (job, sid)
    return steps[0]["run"]


def gh_uses(job, action):
    steps = [s for s in GH["jobs"][job]["steps"] if s.get("uses", "").startswith(action + "@")]
    assert steps, (job, action)
    return steps


def gl_script(job):
    return GL[job]["script"]


def flat(lines):
    out = []
    for l in lines:
        out += flat(l) if isinstance(l, list) else [l]
    return out


def commands(template, job):
    """The commands of a job that the test runs, in order: [(name, shell text)]."""
    if template == "github":
        return [(sid, gh_run(job, sid)) for sid in (NATIVE if job == "native" else QEMU)]
    names = NATIVE if job == "ota-hil-native" else QEMU
    return list(zip(names, gl_script(job)))


def setup_commands(template, job):
    if template == "github":
        return [s["run"] for s in GH["jobs"][job]["steps"] if s.get("id") in SETUP - {"image"}]
    return flat(GL[job]["before_script"])


def env_of(template):
    return dict(GH["env"] if template == "github" else GL["variables"])


# ------------------------------------------------------------------ structure


def test_github_workflow_structure():
    assert set(GH) >= {"name", "env", "jobs"} and (GH.get("on") or GH.get(True))
    assert set(GH["jobs"]) == {"native", "qemu-smoke"}
    assert GH["defaults"]["run"]["shell"] == "bash"
    for name, job in GH["jobs"].items():
        assert job["container"]["image"] == "debian:12", name
        ids = [s.get("id") for s in job["steps"] if "run" in s]
        assert set(ids) <= SETUP | set(NATIVE) | set(QEMU), ids
        assert [i for i in ids if i not in SETUP] == (NATIVE if name == "native" else
                                                     ["smoke", "verdict"])
        # what runs is plain shell: no ${{ }} expressions, the env carries the settings
        assert not any("${{" in s["run"] for s in job["steps"] if "run" in s)
        assert gh_run(name, "deps") == 'bash "$OTA_HIL/ci/install-deps"'
        hil = [s for s in gh_uses(name, "actions/checkout") if s.get("with")]
        assert hil[0]["with"]["path"] == env_of("github")["OTA_HIL"]
        for s in gh_uses(name, "actions/upload-artifact") + gh_uses(
                name, "mikepenz/action-junit-report"):
            assert s["if"] == "${{ !cancelled() }}", s  # kept when trials failed
    # the slow QEMU tier is a job of its own; the native job never boots QEMU
    assert "--target qemu" in gh_run("qemu-smoke", "smoke")
    assert not any("qemu" in s.get("run", "") for s in GH["jobs"]["native"]["steps"])


def test_gitlab_ci_structure():
    jobs = {k for k in GL if not k.startswith(".") and k not in ("variables", "stages")}
    assert jobs == {"ota-hil-native", "ota-hil-qemu-smoke"}
    for name in jobs:
        job = GL[name]
        assert job["image"] == "debian:12" and job["stage"] in GL["stages"]
        assert 'bash "$OTA_HIL/ci/install-deps"' in flat(job["before_script"])
        assert job["artifacts"]["when"] == "always"
        assert len(gl_script(name)) == 3
    assert "--target qemu" in gl_script("ota-hil-qemu-smoke")[1]
    assert not any("qemu" in c for c in gl_script("ota-hil-native"))


def test_both_templates_run_the_same_commands():
    """One interface, two CI systems: the same settings and the same shell commands."""
    gh, gl = env_of("github"), env_of("gitlab")
    assert set(gh) - {"OTA_HIL_REPOSITORY"} == set(gl) - {"OTA_HIL_GIT_URL"}
    assert all(gh[k] == gl[k] for k in gl if k != "OTA_HIL_GIT_URL")
    assert commands("github", "native") == commands("gitlab", "ota-hil-native")
    assert commands("github", "qemu-smoke") == commands("gitlab", "ota-hil-qemu-smoke")
    assert setup_commands("gitlab", "ota-hil-native")[-2:] == [
        gh_run("native", "harness"), gh_run("native", "agent")]


def junit_paths(template, job):
    """The JUnit files the CI system publishes (globs, relative to the workspace)."""
    if template == "github":
        return [gh_uses(job, "mikepenz/action-junit-report")[0]["with"]["report_paths"]]
    return GL[job]["artifacts"]["reports"]["junit"]


def artifact_paths(template, job):
    if template == "github":
        return gh_uses(job, "actions/upload-artifact")[0]["with"]["path"].split()
    return GL[job]["artifacts"]["paths"]


JOBS = [("github", "native", "qemu-smoke"), ("gitlab", "ota-hil-native", "ota-hil-qemu-smoke")]


@pytest.mark.parametrize("template,native,qemu", JOBS)
def test_published_junit_is_what_the_commands_write(template, native, qemu):
    out = env_of(template)["OTA_OUT"]
    for job in (native, qemu):
        text = "\n".join(c for _, c in commands(template, job))
        written = [out + "/" + j for j in re.findall(r'--junit "\$OTA_OUT/([^"]+)"', text)]
        assert written, job
        for path in junit_paths(template, job):
            assert any(fnmatch.fnmatch(w, path) for w in written), (path, written)
        for w in written:
            assert any(fnmatch.fnmatch(w, p) for p in junit_paths(template, job)), w
            assert any(fnmatch.fnmatch(w, p) for p in artifact_paths(template, job)), w
        assert all(p.startswith(out + "/") for p in artifact_paths(template, job))


def build_targets():
    p = subprocess.run(["cmake", "--build", BUILD, "--target", "help"], capture_output=True,
                       text=True, timeout=120)
    names = set(re.findall(r"^\.\.\. ([\w.+-]+)", p.stdout, re.M))
    if not names and os.path.exists(os.path.join(BUILD, "build.ninja")):
        with open(os.path.join(BUILD, "build.ninja"), encoding="utf-8") as f:
            names = set(re.findall(r"^build ([\w.+-]+): phony", f.read(), re.M))
    return names


@needs_build
@pytest.mark.parametrize("template,native,qemu", JOBS)
def test_setup_builds_targets_that_exist(template, native, qemu):
    targets = build_targets()
    assert "ota-sim" in targets, sorted(targets)[:20]
    for job in (native, qemu):
        text = "\n".join(setup_commands(template, job))
        named = [t for m in re.findall(r"--target ((?:[\w.+-]+ ?)+)", text) for t in m.split()]
        assert "ota-sim-harness" in named and "ota-agent" in named, named
        assert set(named) <= targets, set(named) - targets


# ------------------------------------------------------------------ runs


def stand_in_agent(tmp_path):
    """An agent that does nothing and says it has fault points: every update trial fails."""
    p = tmp_path / "noop-agent"
    p.write_text('#!/bin/sh\n[ "$1" = --build-info ] && echo "fault-points: on"\nexit 0\n')
    p.chmod(0o755)
    return str(p)


def run_job(template, job, tmp_path, **override):
    """The job's commands in a workspace with ota-hil (this checkout) in it, as the template
    lays it out; OTA_BUILD and OTA_AGENT are this build's. Returns (workspace, env,
    [(name, exit code, output)])."""
    ws = tmp_path / "ws"
    ws.mkdir()
    os.symlink(SRC, ws / env_of(template)["OTA_HIL"])
    env = {**os.environ, **{k: str(v) for k, v in env_of(template).items()}, **SAMPLE,
           "OTA_BUILD": BUILD, "OTA_AGENT": os.path.join(BUILD, "agent", "ota-agent"),
           "OTA_TREES": str(tmp_path), **override}
    done = []
    for name, text in commands(template, job):
        p = subprocess.run(BASH + [text], cwd=ws, env=env, capture_output=True, text=True,
                           timeout=600)
        done.append((name, p.returncode, p.stdout + p.stderr))
    return ws, env, done


def junit_cases(path):
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites" and root.get("name") == "ota-sim"
    return [(s.get("name"), c.get("name"), [x.tag for x in c])
            for s in root.findall("testsuite") for c in s.findall("testcase")]


@needs_build
@pytest.mark.parametrize("template,native,qemu", JOBS)
def test_native_job_runs_here_and_keeps_its_artifacts(template, native, qemu, tmp_path):
    ws, env, done = run_job(template, native, tmp_path)
    assert [(n, rc) for n, rc, _ in done] == [(n, 0) for n in NATIVE], done
    out = ws / env["OTA_OUT"]
    assert (out / "scenarios.exit").read_text() == "0\n"
    assert (out / "matrix.exit").read_text() == "0\n"
    for pattern in artifact_paths(template, native) + junit_paths(template, native):
        assert glob.glob(str(ws / pattern)), pattern
    # matrix.yaml in OTA_SCENARIOS is skipped: the two scenario files ran
    assert sorted({s for s, _, _ in junit_cases(out / "junit-scenarios.xml")}) == [
        "app-update-good", "power-loss-switching"]
    # the matrix sample: OTA_MATRIX_SAMPLE cases of the matrix's list, each a testcase
    every = (out / "matrix-all-cases.txt").read_text().split()
    sample = (out / "matrix-cases.txt").read_text().split()
    assert len(sample) == 4 and set(sample) <= set(every) and len(every) > 100
    assert sorted(c for _, c, _ in junit_cases(out / "junit-matrix.xml")) == sorted(sample)
    for suite in ("scenarios", "matrix"):
        page = (out / ("report-" + suite) / "report.html").read_text()
        assert page.startswith("<!DOCTYPE html>") and "</html>" in page
        assert (out / ("report-" + suite) / "reproduce.txt").read_text().startswith("# ota-sim")


@needs_build
def test_a_failing_agent_fails_the_verdict_and_keeps_its_reproduce_commands(tmp_path):
    agent = stand_in_agent(tmp_path)
    ws, env, done = run_job("github", "native", tmp_path, OTA_AGENT=agent,
                            OTA_SCENARIOS="ota-hil/scenarios/app-update-good.yaml",
                            OTA_MATRIX_SAMPLE="1")
    # the steps record ota-sim's exit and go on (the reports are made); the verdict fails
    assert [(n, rc) for n, rc, _ in done][:2] == [("scenarios", 0), ("matrix", 0)], done
    assert done[2][1] != 0 and "ota-hil scenarios: ota-sim exit 1 " in done[2][2], done
    out = ws / env["OTA_OUT"]
    assert junit_cases(out / "junit-scenarios.xml") == [
        ("app-update-good", "app-update-good", ["failure"])]
    repro = (out / "report-scenarios" / "reproduce.txt").read_text().splitlines()
    assert repro[1].startswith("# app-update-good: fail: ")
    assert repro[2].endswith(" run %s/scenarios/app-update-good.yaml --fault none --trigger start"
                             " --seed 7 --agent %s --keep" % (ws / "ota-hil", agent)), repro


@needs_build
def test_a_bad_agent_path_is_exit_2_and_fails_the_verdict(tmp_path):
    ws, env, done = run_job("gitlab", "ota-hil-native", tmp_path,
                            OTA_AGENT=str(tmp_path / "no-such-agent"))
    assert [(n, rc) for n, rc, _ in done] == [("scenarios", 0), ("matrix", 0), ("verdict", 2)]
    assert (ws / env["OTA_OUT"] / "scenarios.exit").read_text() == "2\n"
    assert (ws / env["OTA_OUT"] / "matrix.exit").read_text() == "2\n"
    assert not os.path.exists(ws / env["OTA_OUT"] / "junit-scenarios.xml")


# ------------------------------------------------------------------ QEMU job


def smoke_set():
    """SMOKE of scenarios/test_qemu.py: the smoke set CTest runs."""
    with open(os.path.join(SRC, "scenarios", "test_qemu.py"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "SMOKE":
            return ast.literal_eval(node.value)
    raise AssertionError("no SMOKE in scenarios/test_qemu.py")


@pytest.mark.parametrize("template,native,qemu", JOBS)
def test_qemu_job_names_what_exists(template, native, qemu):
    text = "\n".join(c for _, c in commands(template, qemu))
    paths = re.findall(r'"\$OTA_HIL/([^"]+)"', text)
    assert "images/make-image" in paths
    for p in paths:
        assert os.path.exists(os.path.join(SRC, p)), p
    assert os.access(os.path.join(SRC, "images", "make-image"), os.X_OK)
    scen = sorted(os.path.basename(p) for p in paths if p.startswith("scenarios/"))
    assert scen == sorted(smoke_set())
    assert "--profile raspi3b" in text
    assert "${OTA_GUEST_AGENT:+--guest-agent \"$OTA_GUEST_AGENT\"}" in text


@needs_build
def test_the_options_the_templates_use_exist():
    """Every option in the templates is one ota-sim or ota-report knows (their --help)."""
    helptext = subprocess.run([SIM, "--help"], capture_output=True, text=True).stdout
    helptext += subprocess.run(["/usr/bin/python3", os.path.join(SRC, "reports", "ota-report"),
                                "--help"], capture_output=True, text=True).stdout
    text = "\n".join(c for t, n, q in JOBS for j in (n, q) for _, c in commands(t, j))
    opts = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", text)) - {"--noprofile"}
    missing = {o for o in opts if o not in helptext}
    assert not missing, missing
