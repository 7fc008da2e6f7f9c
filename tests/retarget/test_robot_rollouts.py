import numpy as np

from psi_gym.retarget.robot_rollouts import PERTURBATIONS, make_rollout, perturb

FRESH_SEED = 918273  # not used while tuning the demonstrator


def test_rollouts_fail_often_enough_and_are_labelled():
    episodes = [make_rollout(FRESH_SEED, i) for i in range(18)]
    failures = np.mean([not e.success for e in episodes])
    assert failures >= 0.3
    assert all(e.embodiment == "robot" and e.keypoints is None for e in episodes)
    np.testing.assert_array_equal(make_rollout(FRESH_SEED, 3).frames, episodes[3].frames)


def test_perturbations_change_the_plan():
    rng = np.random.default_rng(0)
    plan = np.cumsum(rng.normal(size=(32, 22)), axis=0)
    for name in PERTURBATIONS:
        assert not np.allclose(perturb(plan, name, np.random.default_rng(1), 22), plan), name


def test_collect_residual_source_writes_what_refinement_searches(tmp_path, capsys):
    """``--sources residual``: retargeted demos plus a smooth residual (theta in the metadata), replayed
    over the env's horizon T + EPISODE_SLACK; the same episode as `make_rollout` with that source."""
    import json

    from psi_gym.cli import main
    from psi_gym.data.lerobot import read_episodes
    from psi_gym.retarget.human_demos import make_demo
    from psi_gym.sim.residuals import DEFAULT_KNOTS, NUM_PARAMETERS, RESIDUAL_SIZES
    from psi_gym.sim.tasks import EPISODE_SLACK

    out = tmp_path / "residual"
    assert main(["collect", "--num", "2", "--seed", "4", "--sources", "residual", "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["episodes"] == 2 and set(summary["by_source"]) == {"residual"}
    for index, episode in enumerate(read_episodes(out)):
        metadata = episode.metadata
        assert metadata["kind"] == "residual" and metadata["index"] == index and metadata["size"] in RESIDUAL_SIZES
        theta = np.asarray(metadata["theta"])
        assert theta.shape == (DEFAULT_KNOTS, NUM_PARAMETERS) and np.abs(theta).max() <= metadata["size"]
        demo = make_demo(episode.task, 4, 1_000_000 + index, episode.tier, 64)  # the demo it retargets
        assert episode.num_steps == demo.num_steps + EPISODE_SLACK
        assert episode.tier in ("precision", "generalization") and episode.embodiment == "robot"
        again = make_rollout(4, index, sources={"residual": 1.0})
        np.testing.assert_array_equal(episode.action, again.action)
        assert episode.success == again.success
