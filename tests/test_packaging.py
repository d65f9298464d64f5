"""Packaging: presets from Python, pyproject's dependencies, and what the package holds.

That `pip install -e .` works in a fresh virtual environment, with nothing else installed, and
that `import mnist_core` then works from another folder, is checked by `.ci/run`, in its
fresh `.venv` before the test requirements go in (a fresh environment needs a full PyTorch
install: about 1.5 minutes).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from mnist_core.config import PRESETS, ConfigError, TrainConfig

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_is_the_presets_config(name):
    assert TrainConfig.preset(name) == PRESETS[name].config


def test_fast_preset_is_not_just_the_fast_model():
    # The reason TrainConfig.preset exists: this looks like the Fast preset but trains worse.
    assert TrainConfig.preset("fast") != TrainConfig(model="fast", epochs=1)
    assert TrainConfig.preset("fast").replace(seed=3).seed == 3


@pytest.mark.parametrize("name", ["quick", "Fast", "", None])
def test_unknown_preset_names_the_known_ones(name):
    with pytest.raises(ConfigError) as raised:
        TrainConfig.preset(name)
    assert raised.value.field == "preset"
    assert str(raised.value) == f"preset: unknown preset {name!r}; choose one of case-study, fast, best"
    assert isinstance(raised.value, ValueError)


def _requirements(lines: list[str]) -> list[str]:
    return [re.sub(r"\s+", "", line) for line in lines if line.strip() and not line.lstrip().startswith(("#", "-"))]


def test_dependencies_are_requirements_txt():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    required = _requirements((ROOT / "requirements.txt").read_text().splitlines())
    assert required, "requirements.txt lists no requirements"
    assert _requirements(project["dependencies"]) == required


def test_wheel_holds_mnist_core_and_nothing_else(tmp_path):
    pytest.importorskip("setuptools", minversion="64", reason="building the wheel offline needs setuptools>=64 here")
    # Built from a copy, so the build's egg-info and build/ folders never land in the checkout.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "data", "runs", "test-artifacts", "build", "*.egg-info", "__pycache__", ".*_cache"))
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--wheel-dir", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = (tmp_path / "dist").glob("mnist_core-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    packaged = {name for name in names if not name.startswith("mnist_core-")}  # the rest is .dist-info
    assert packaged == {f"mnist_core/{path.name}" for path in (ROOT / "mnist_core").glob("*.py")}


def test_the_ray_extra_is_requirements_ray_txt_and_stays_out_of_the_runtime_requirements():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    ray = _requirements((ROOT / "requirements-ray.txt").read_text().splitlines())
    assert ray and _requirements(project["optional-dependencies"]["ray"]) == ray
    assert not any(line.startswith("ray") for line in _requirements((ROOT / "requirements.txt").read_text().splitlines()))


def test_streamlit_reads_the_projects_server_settings(monkeypatch):
    # A full garbage collection after every script run cost 170 ms per stroke on Draw and per
    # poll of a live chart, three quarters of the server's time under load (bench/load_test.py).
    from streamlit import config

    monkeypatch.chdir(ROOT)
    config.get_config_options(force_reparse=True)
    assert config.get_option("runner.postScriptGC") is False
    assert config.get_option("server.fileWatcherType") == "none"
    assert config.get_option("client.showErrorDetails") == "none"  # no tracebacks in the browser
