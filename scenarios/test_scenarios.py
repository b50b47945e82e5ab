"""Every scenario file is a test: `ota-sim run FILE` must pass (all its
trials, every invariant, its expect: block)."""
import os

import pytest

from conftest import HERE, JOBS, scenario_files, sim


@pytest.mark.parametrize("name", scenario_files())
def test_scenario(name, work, tmp_path):
    db = str(tmp_path / "runs.db")
    junit = str(tmp_path / "junit.xml")
    r = sim("run", os.path.join(HERE, name), "-q", "-j", JOBS, "--work", work, "--db", db,
            "--junit", junit)
    if r.returncode == 4:  # not run: the agent lacks what it needs (named fault points)
        pytest.skip(r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "not run")
    assert r.returncode == 0, f"ota-sim run {name}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert os.path.exists(junit)


def test_the_agent_under_test_is_named_by_its_adapter(work, tmp_path):
    """device.agent names the adapter (docs/agents.md): ota-agent runs as the
    default does; a name without an adapter is refused before anything runs."""
    text = open(os.path.join(HERE, "app-update-good.yaml")).read()
    assert "device: {profile: app," in text
    good = tmp_path / "named.yaml"
    good.write_text(text.replace("device: {profile: app,", "device: {profile: app, agent: ota-agent,"))
    r = sim("run", str(good), "-q", "-j", JOBS, "--work", work, "--db", str(tmp_path / "a.db"))
    assert r.returncode == 0, r.stdout + r.stderr
    bad = tmp_path / "rauc.yaml"
    bad.write_text(text.replace("device: {profile: app,", "device: {profile: app, agent: rauc,"))
    r = sim("run", str(bad), "-q", "--work", work, "--db", str(tmp_path / "b.db"))
    assert r.returncode != 0, r.stdout + r.stderr
    assert "device.agent: 'rauc' is not an agent the harness has an adapter for" in r.stderr, \
        r.stderr
