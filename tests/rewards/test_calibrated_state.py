"""The calibrated success: path features, the calibrator (fit, save, load), the reward model, and the env handing it W0's path."""

from __future__ import annotations

import numpy as np
import pytest

from psi_gym.rewards import CalibratedStateReward, CalibratedStateRewardConfig, resolve_reward_model
from psi_gym.rewards.success_calibration import PATH_FEATURES, fit_calibrator, load_calibrator, path_features
from tests.rewards.test_reward_models import make_batch

pytestmark = pytest.mark.usefixtures("one_torch_thread")
COLUMN = {name: i for i, name in enumerate(PATH_FEATURES)}


def lift_path(rest_z: float, lift: float, steps: int = 40, drop_at: int | None = None) -> np.ndarray:
    """An apple raised by ``lift`` m over the first half, held (or dropped back at ``drop_at``)."""
    z = rest_z + lift * np.clip(np.arange(steps + 1) / (steps / 2), 0, 1)
    if drop_at is not None:
        z[drop_at:] = rest_z
    return np.c_[np.zeros(steps + 1), np.zeros(steps + 1), z]


@pytest.fixture(scope="module")
def planted():
    """A calibrator fit on rows whose label is 'W0's verdict and a margin at the end over 2 cm'."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, len(PATH_FEATURES))).astype(np.float32)
    x[:, COLUMN["verdict"]] = rng.random(600) < 0.5
    y = (x[:, COLUMN["verdict"]] > 0.5) & (x[:, COLUMN["margin_end_cm"]] > 0.0)
    return fit_calibrator(x, y, np.arange(600) // 6, members=2, width=16, steps=300, seed=0)


def test_path_features_of_a_held_and_a_dropped_lift():
    batch = make_batch(num_rows=1, num_steps=40)
    episode = batch.episodes[0]  # lift_apple, the human's object moved 10 cm along +x
    rest = episode.scene.object_rest_z
    held = path_features(lift_path(rest, 0.10), episode.task, episode.scene, episode.human_object_pose)
    dropped = path_features(lift_path(rest, 0.10, drop_at=36), episode.task, episode.scene, episode.human_object_pose)
    assert held[COLUMN["lift_apple"]] == 1 and held[COLUMN["push_box"]] == 0
    assert held[COLUMN["verdict"]] == 1 and dropped[COLUMN["verdict"]] == 0
    assert held[COLUMN["margin_end_cm"]] == pytest.approx(4.0, abs=1e-4)  # 10 cm up, the bar is 6
    assert dropped[COLUMN["margin_end_cm"]] == pytest.approx(-6.0, abs=1e-4)
    assert held[COLUMN["margin_max_cm"]] == dropped[COLUMN["margin_max_cm"]]
    assert dropped[COLUMN["speed_max_cm"]] == pytest.approx(10.0, abs=1e-3)  # the fall: 10 cm in one step
    assert held[COLUMN["first_success"]] == pytest.approx(13 / 40)  # 6 cm reached after 12 steps, over it at 13
    assert held[COLUMN["success_fraction"]] == pytest.approx(28 / 41)
    goal = episode.human_object_pose[1:, :3]
    path = lift_path(rest, 0.10)
    assert held[COLUMN["tracking_per_step"]] == pytest.approx(np.exp(-np.linalg.norm(path[1:] - goal, axis=1) / 0.02).mean())
    with pytest.raises(ValueError, match="finite"):
        path_features(np.full((41, 3), np.nan), episode.task, episode.scene, episode.human_object_pose)
    with pytest.raises(ValueError, match=r"\(H\+1 >= 2, 3\)"):
        path_features(np.zeros((41, 2)), episode.task, episode.scene, episode.human_object_pose)


def test_the_calibrator_learns_a_planted_rule_and_saves_and_loads(planted, tmp_path):
    model, summary = planted
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, len(PATH_FEATURES))).astype(np.float32)
    x[:, COLUMN["verdict"]] = rng.random(400) < 0.5
    truth = (x[:, COLUMN["verdict"]] > 0.5) & (x[:, COLUMN["margin_end_cm"]] > 0.0)
    p = model.probability(x)
    assert ((p >= 0.5) == truth).mean() > 0.9 and summary["validation_rows"] > 0
    model.save(tmp_path / "calibrator.safetensors", world_model="a test")
    loaded = load_calibrator(tmp_path / "calibrator.safetensors", features=PATH_FEATURES)
    np.testing.assert_allclose(loaded.probability(x), p, rtol=1e-6)
    assert loaded.metadata["world_model"] == "a test" and loaded.features == PATH_FEATURES
    with pytest.raises(ValueError, match="reads the features"):
        load_calibrator(tmp_path / "calibrator.safetensors", features=PATH_FEATURES[:-1])
    with pytest.raises(FileNotFoundError, match="psi-gym train-calibrator"):
        load_calibrator(tmp_path / "missing.safetensors")
    (tmp_path / "broken.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="is not a calibrator"):
        load_calibrator(tmp_path / "broken.safetensors")
    with pytest.raises(ValueError, match="successes and failures"):
        fit_calibrator(x, np.zeros(400, bool))


def test_a_refit_from_a_calibrator_keeps_it_until_training_helps_and_follows_a_shifted_world(planted):
    """``fit_calibrator(init=...)``: with no steps the start comes back unchanged; on a world whose margins
    now read 1 cm high (a fine-tuned W0), a short refit on a few rows follows the shift."""
    model, _ = planted
    rng = np.random.default_rng(2)

    def world(n: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.normal(size=(n, len(PATH_FEATURES))).astype(np.float32)
        x[:, COLUMN["verdict"]] = rng.random(n) < 0.5
        truth = (x[:, COLUMN["verdict"]] > 0.5) & (x[:, COLUMN["margin_end_cm"]] > 0.0)
        x[:, COLUMN["margin_end_cm"]] += 1.0
        return x, truth

    x, y = world(300)
    same, _ = fit_calibrator(x, y, np.arange(300) // 6, steps=0, init=model)
    np.testing.assert_array_equal(same.probability(x), model.probability(x))
    refit, summary = fit_calibrator(x, y, np.arange(300) // 6, steps=300, learning_rate=1e-3, init=model)
    test_x, truth = world(2000)
    near = (test_x[:, COLUMN["verdict"]] > 0.5) & (np.abs(test_x[:, COLUMN["margin_end_cm"]] - 1.0) < 1.0)
    before = ((model.probability(test_x) >= 0.5) == truth)[near].mean()
    after = ((refit.probability(test_x) >= 0.5) == truth)[near].mean()
    assert after > before + 0.1 and len(summary["members"]) == len(model.mlps)
    with pytest.raises(ValueError, match="init reads the features"):
        fit_calibrator(x[:, :-1], y, names=PATH_FEATURES[:-1], init=model)


def test_calibrated_state_reward_pays_the_probability_on_the_last_step(planted):
    model, _ = planted
    reward_model = CalibratedStateReward(model, CalibratedStateRewardConfig(success_bonus=20.0))
    batch = make_batch(num_rows=3, step=40, num_steps=40, last=True)  # lift_apple, lift_can, push_box
    paths = np.stack([lift_path(episode.scene.object_rest_z, lift) for episode, lift in
                      zip(batch.episodes, (0.10, 0.03, 0.0))]).astype(np.float32)
    batch.object_path, batch.object_position = paths, paths[:, -1].copy()
    out = reward_model(batch)
    features = np.stack([path_features(paths[i], e.task, e.scene, e.human_object_pose) for i, e in enumerate(batch.episodes)])
    p = model.probability(features)
    tracking = np.exp(-np.linalg.norm(paths[:, -1] - batch.episodes[0].human_object_pose[-1, :3], axis=1) / 0.02)
    np.testing.assert_allclose(out.info["success_probability"], p, rtol=1e-5)
    np.testing.assert_allclose(out.reward, tracking + 20.0 * p, rtol=1e-5)
    assert out.success.tolist() == ((features[:, COLUMN["verdict"]] > 0.5) & (p >= 0.5)).tolist()
    assert out.success[0] and not out.success[1]  # lifted 10 cm and held; 3 cm: under the bar
    assert not CalibratedStateReward(model, CalibratedStateRewardConfig(success_threshold=1.0))(batch).success.any()
    batch.last = np.zeros(3, bool)  # before the last step: tracking only, no probability
    out = reward_model(batch)
    np.testing.assert_allclose(out.reward, tracking, rtol=1e-5)
    assert np.isnan(out.info["success_probability"]).all() and not out.success.any()
    batch.last, batch.object_path = np.ones(3, bool), None
    with pytest.raises(ValueError, match="object_path"):
        reward_model(batch)
    batch.object_position[0] = np.nan
    with pytest.raises(ValueError, match="predicts no object state; use reward_model='object_tracking'"):
        reward_model(batch)
    with pytest.raises(ValueError, match="success_threshold"):
        CalibratedStateRewardConfig(success_threshold=2.0)


def test_the_shipped_calibrator_reads_the_shipped_w0_and_tells_a_held_lift_from_a_dropped_one():
    reward_model = resolve_reward_model("calibrated_state")
    assert isinstance(reward_model, CalibratedStateReward)
    calibrator = reward_model.calibrator
    assert calibrator.metadata["world_model"] == "default" and calibrator.features == PATH_FEATURES
    for episode in make_batch(num_rows=2, num_steps=40).episodes:  # lift_apple, lift_can
        rest = episode.scene.object_rest_z
        human = np.zeros((41, 7), np.float32)
        human[:, :3], human[:, 3] = lift_path(rest, 0.10), 1.0  # the human raised it 10 cm and held it
        held, dropped, still = (path_features(path, episode.task, episode.scene, human) for path in (
            lift_path(rest, 0.10), lift_path(rest, 0.10, drop_at=36), lift_path(rest, 0.0)))
        p_held, p_dropped, p_still = calibrator.probability(np.stack([held, dropped, still]))
        assert p_held > 0.9 and p_held > max(p_dropped, p_still) + 0.2, episode.task


def test_the_env_hands_the_reward_model_the_path_its_world_model_advances(planted):
    """Trained on `object_paths` (W0's dynamics unrolled offline); used in the env: the two must be the same path."""
    from gymnasium.vector import AutoresetMode

    from psi_gym.agents.calibration import plan_features
    from psi_gym.agents.rollouts import demo_refs, run_plans_in_env
    from psi_gym.agents.world_model_report import heldout_demos
    from psi_gym.envs.psi_w0_retarget_vector import PsiW0RetargetVectorEnv
    from psi_gym.world_model.loading import load_world_model

    model, _ = planted
    demos = heldout_demos(11, 3)
    world_model = load_world_model("random:debug", "cpu")
    reward_model = CalibratedStateReward(model)
    env = PsiW0RetargetVectorEnv(num_envs=4, world_model=world_model, reward_model=reward_model, demos=demos,
                                 successful_demos_only=False, autoreset_mode=AutoresetMode.DISABLED)
    refs = demo_refs(env)
    rng = np.random.default_rng(0)
    rows = [ref for ref in refs for _ in range(2)]
    plans = [rng.uniform(-0.5, 0.5, (ref.horizon, 22)).astype(np.float32) for ref in rows]
    returns = run_plans_in_env(env, rows, plans, list(range(len(rows)))).returns
    env.close()
    first = np.stack([demo.frames[0] for demo in demos])[[refs.index(ref) for ref in rows]]
    features = plan_features(world_model, first, rows, plans)
    horizon = np.array([ref.horizon for ref in rows])
    expected = features[:, COLUMN["tracking_per_step"]] * horizon + 20.0 * model.probability(features)
    np.testing.assert_allclose(returns, expected, rtol=1e-4, atol=1e-4)


def test_train_calibrator_writes_a_file_the_env_reward_reads(tmp_path, capsys):
    """``psi-gym train-calibrator`` on a tiny pool of an untrained W0, then that file in a gym.make env to its last step."""
    import json

    import gymnasium as gym

    from psi_gym.cli import main

    out = tmp_path / "calibrator.safetensors"
    assert main(["train-calibrator", "--world-model", "random:debug", "--pools", "5:3", "--candidates", "4", "--members",
                 "2", "--steps", "30", "--cache", str(tmp_path / "cache"), "--out", str(out), "--no-progress", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == 12 and 0 < summary["success_rate"] < 1 and len(summary["members"]) == 2
    assert (tmp_path / "cache" / "sim-s5-3x4.npz").is_file() and load_calibrator(out).metadata["pools"] == "5:3"
    env = gym.make("PsiW0-Retarget-v0", world_model="random:debug", reward_model=CalibratedStateReward(out))
    env.reset(seed=0)
    terminated, steps = False, 0
    while not terminated:
        _, reward, terminated, _, info = env.step(np.zeros(22, np.float32))
        steps += 1
        assert np.isfinite(reward) and np.isnan(info["success_probability"]) != terminated
    assert 0 <= info["success_probability"] <= 1 and steps == env.unwrapped.core.limit[0]
    env.close()
