"""Function environments (scripts/devstack/envs.py): made once per requirement set, reused
while it is unchanged, safe when two test runs ask for the same one at once."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from devstack import envs

from .conftest import ROOT

_ENSURE = ("import sys; from pathlib import Path; from devstack import envs; "
           "print(envs.ensure((Path(sys.argv[1]),), venvs=Path(sys.argv[2])))")


def _ask_at_once(requirements: Path, venvs: Path, count: int) -> list[subprocess.CompletedProcess]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'scripts'}"}
    procs = [subprocess.Popen([sys.executable, "-c", _ENSURE, str(requirements), str(venvs)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(count)]
    return [subprocess.CompletedProcess(p.args, p.wait(180), *p.communicate()) for p in procs]


def test_two_processes_asking_at_once_get_one_working_environment(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("orjson==3.13.0\n")
    venvs = tmp_path / "venvs"
    answers = _ask_at_once(requirements, venvs, 3)
    assert [a.returncode for a in answers] == [0, 0, 0], [a.stderr for a in answers]
    pythons = {a.stdout.strip() for a in answers}
    assert len(pythons) == 1
    [made] = [d for d in venvs.iterdir() if d.is_dir()]  # no half-made folder left behind
    assert str(made / "bin" / "python") in pythons
    probe = subprocess.run([str(made / "bin" / "python"), "-I", "-c", "import orjson"],
                           capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr


def test_an_environment_is_reused_until_its_requirements_change(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("orjson==3.13.0\n")
    venvs = tmp_path / "venvs"
    first = envs.ensure((requirements,), venvs=venvs)
    made_at = first.parent.parent.stat().st_mtime_ns
    assert envs.ensure((requirements,), venvs=venvs) == first
    assert first.parent.parent.stat().st_mtime_ns == made_at  # not made again
    requirements.write_text("orjson==3.13.0\ntzdata==2026.6\n")
    second = envs.ensure((requirements,), venvs=venvs)
    assert second != first
    probe = subprocess.run([str(second), "-I", "-c", "import tzdata"], capture_output=True)
    assert probe.returncode == 0


def test_a_requirement_that_cannot_be_installed_fails_naming_the_function(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("orjson==\n")  # refused as written: nothing is downloaded
    try:
        envs.ensure((requirements,), venvs=tmp_path / "venvs", label="receive-usage")
    except envs.FunctionEnvError as exc:
        assert str(exc).startswith("receive-usage: installing ") and "\n" not in str(exc)
    else:
        raise AssertionError("an environment was made without its requirement")
    assert not [d for d in (tmp_path / "venvs").iterdir() if d.is_dir()]  # nothing half-made
