"""The agents' example scripts run with tiny settings (untrained debug W0, random estimator)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from psi_gym.agents.policy import PsiR2Policy, debug_policy_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_refine_with_ppo_example_smoke(tmp_path):
    folder = tmp_path / "r2"
    PsiR2Policy.from_policy_config(debug_policy_config()).save_pretrained(folder)
    example = load_example("refine_with_ppo")
    result = example.main(example.Args(world_model="random:debug", estimator="random", policy=str(folder), num_demos=2,
                                       num_envs=2, iterations=1, epochs=1, minibatch_size=4, max_episode_steps=3))
    assert set(result) == {"w0_success_before", "sim_success_before", "w0_success_after", "sim_success_after",
                           "train_seconds"}


def test_evaluate_policy_example_smoke(tmp_path):
    folder = tmp_path / "r2"
    PsiR2Policy.from_policy_config(debug_policy_config()).save_pretrained(folder)
    example = load_example("evaluate_policy")
    result = example.main(example.Args(policies=["raw", "random:1.0", str(folder), f"{folder}@0.5"], num_demos=2,
                                       world_model="random:debug", estimator="random", num_envs=2))
    assert result["num_policies"] == 4 and result["num_demos"] == 2
    assert set(result["success"]) == {"pearson", "spearman"}
    assert {"policy", "w0_success", "sim_success", "w0_return", "sim_return"} <= set(result["policies"][0])


def test_torchrl_ppo_example_smoke():
    example = load_example("torchrl_ppo")
    history = example.main(example.Args(world_model="random:debug", estimator="random", num_envs=2,
                                        max_episode_steps=3, iterations=1, epochs=1, minibatch_size=3))
    assert len(history) == 1 and set(history[0]) == {"iteration", "w0_return", "w0_success"}
