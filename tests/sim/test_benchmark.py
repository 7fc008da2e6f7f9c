"""The simulator baseline of `psi-gym bench`: sequential and split over worker processes."""

import pytest

from psi_gym.sim.benchmark import parallel_sim_steps_per_second, sim_steps_per_second


def test_sequential_baseline_reports_physics_and_render():
    result = sim_steps_per_second(num_envs=2, steps=3)
    assert result["sim_steps_per_s"] > 0
    assert result["physics_ms_per_step"] > 0 and result["render_ms_per_frame"] > 0


def test_parallel_baseline_splits_worlds_over_processes():
    result = parallel_sim_steps_per_second(num_envs=3, workers=2, steps=3)
    assert result["workers"] == 2 and result["sim_steps_per_s"] > 0
    assert parallel_sim_steps_per_second(num_envs=1, workers=4, steps=2)["workers"] == 1


def test_parallel_baseline_rejects_bad_sizes():
    with pytest.raises(ValueError, match="workers"):
        parallel_sim_steps_per_second(num_envs=2, workers=0)
