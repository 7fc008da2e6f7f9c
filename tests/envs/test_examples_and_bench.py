"""The example scripts run with tiny settings; `psi-gym bench --json` prints its keys."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from psi_gym.cli import main
from tests.default_world_model import require_default_world_model

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_sb3_ppo_example_smoke(world_model_path, estimator_path):
    example = load_example("sb3_ppo")
    args = example.Args(world_model=str(world_model_path), estimator=str(estimator_path), num_envs=2,
                        total_timesteps=16, n_steps=8, batch_size=8, n_epochs=1, eval_episodes=2, max_episode_steps=4)
    result = example.main(args)
    assert set(result) == {"mean_return_before", "mean_return_after", "train_seconds"}
    assert all(isinstance(v, float) for v in result.values())


def test_custom_reward_example_smoke(world_model_path):
    example = load_example("custom_reward")
    returns = example.main(example.Args(world_model=str(world_model_path), steps=3, num_envs=2))
    assert set(returns) == {"stay_near_reference", "wrist_lift"}


def test_bench_json(capsys, world_model_path, estimator_path):
    from psi_gym.world_model import default_checkpoint_path

    argv = ["bench", "--json", "--num-envs", "1,2", "--steps", "3", "--sim-workers", "2"]
    if not (default_checkpoint_path() / "config.json").is_file():
        argv += ["--world-model", str(world_model_path), "--estimator", str(estimator_path)]
    else:
        require_default_world_model()
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert set(summary["results"]) == {"1", "2"}
    for result in summary["results"].values():
        assert {"w0_steps_per_s", "sim_steps_per_s", "ratio", "profile_ms_per_step"} <= set(result)
        assert result["ratio"] == pytest.approx(result["w0_steps_per_s"] / result["sim_steps_per_s"])
        assert set(result["profile_ms_per_step"]) == {"world_model", "reward_model", "env_overhead", "total"}
        assert result["sim_workers"] == min(2, result["num_envs"])  # never more processes than worlds


def test_bench_without_a_checkpoint_says_so(capsys, tmp_path):
    assert main(["bench", "--json", "--num-envs", "1", "--steps", "1", "--world-model", str(tmp_path / "none")]) == 2
    assert "random:tiny" in capsys.readouterr().err
