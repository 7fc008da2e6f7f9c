"""Reward models: the interface's checks, the built-ins' arithmetic, and what `reward_model=` accepts."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import psi_gym  # noqa: F401  (registers the env)
from psi_gym.rewards import (
    CallableReward,
    EpisodeContext,
    ObjectTrackingReward,
    ObjectTrackingRewardConfig,
    RewardInput,
    RewardOutput,
    SuccessClassifierReward,
    SuccessClassifierRewardConfig,
    StateTrackingReward,
    as_reward_output,
    load_estimator,
    resolve_reward_model,
)
from psi_gym.sim.scene import SceneParams
from psi_gym.sim.tasks import TASKS
from tests.envs.helpers import save_tiny_estimator


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def never_done(tmp_path_factory):
    return str(save_tiny_estimator(tmp_path_factory.mktemp("never"), success_bias=-10.0))


@pytest.fixture(scope="module")
def always_done(tmp_path_factory):
    return str(save_tiny_estimator(tmp_path_factory.mktemp("always"), success_bias=10.0))


def make_batch(num_rows: int = 3, step: int = 5, num_steps: int = 32, last: bool = False) -> RewardInput:
    rng = np.random.default_rng(0)
    tasks = sorted(TASKS)
    episodes = []
    for i in range(num_rows):
        pose = np.zeros((num_steps + 1, 7), np.float32)
        pose[:, 0] = np.linspace(0, 0.1, num_steps + 1)  # the human moved the object along +x
        pose[:, 3] = 1.0
        scene = SceneParams(task=tasks[i % 3], object_kind="apple", object_size=[0.04], object_mass=0.1,
                            object_friction=1.0, object_xy=[0.0, 0.0], object_yaw=0.0)
        episodes.append(EpisodeContext(task=tasks[i % 3], instruction="do it", scene=scene,
                                       reference=np.zeros((num_steps + 1, 22), np.float32),
                                       human_object_pose=pose, demo_id=f"demo-{i}", demo_index=i))
    return RewardInput(
        frames=rng.integers(0, 256, (num_rows, 64, 64, 3), dtype=np.uint8),
        state=np.zeros((num_rows, 22), np.float32),
        action=np.zeros((num_rows, 22), np.float32),
        target=np.zeros((num_rows, 22), np.float32),
        step=np.full(num_rows, step, np.int64),
        object_position=np.zeros((num_rows, 3), np.float32),
        episodes=episodes,
        last=np.full(num_rows, last),
    )


# ------------------------------------------------------------------------------- interface
def test_as_reward_output_accepts_arrays_and_outputs():
    out = as_reward_output([1, 2, 3], 3)
    assert out.reward.dtype == np.float32 and out.success is None and out.terminated is None
    out = as_reward_output(RewardOutput(np.ones(2), success=np.array([True, False])), 2)
    assert out.success.tolist() == [True, False]


@pytest.mark.parametrize(
    "value, match",
    [
        (np.zeros(4), "3 rewards"),
        (np.zeros((3, 1)), "3 rewards"),
        ([1.0, float("nan"), 0.0], "NaN"),
        (RewardOutput(np.zeros(3), success=np.zeros(3)), "success"),
        (RewardOutput(np.zeros(3), terminated=np.zeros(2, bool)), "terminated"),
        (RewardOutput(np.zeros(3), info={"x": np.zeros(2)}), "info"),
        ("abc", "RewardOutput"),
        (None, "returned None; expected a RewardOutput or 3 rewards"),
        (RewardOutput(None), "reward=None; expected 3 rewards"),
        (RewardOutput(["a", "b", "c"]), "expected 3 float rewards"),
    ],
)
def test_as_reward_output_refuses_bad_values(value, match):
    with pytest.raises(ValueError, match=match):
        as_reward_output(value, 3)


# ------------------------------------------------------------------------------- built-ins
def test_object_tracking_reward_tracks_the_human_object_trajectory(never_done):
    reward_model = ObjectTrackingReward(never_done, ObjectTrackingRewardConfig(sigma=0.05))
    batch = make_batch(step=5)
    out = reward_model(batch)
    position = load_estimator(never_done).predict(batch.frames).position.numpy()
    goal = np.array([[0.1 * 5 / 32, 0.0, 0.0]] * 3)
    distance = np.linalg.norm(position - goal, axis=1)
    np.testing.assert_allclose(out.info["object_distance"], distance, rtol=1e-5)
    np.testing.assert_allclose(out.reward, np.exp(-distance / 0.05), rtol=1e-5)
    assert not out.success.any() and not out.terminated.any()
    assert (out.info["success_probability"] < 1e-3).all()
    # past the demo's end the goal holds at the last pose
    late = reward_model(make_batch(step=50))
    np.testing.assert_allclose(late.info["object_distance"], np.linalg.norm(position - [[0.1, 0, 0]], axis=1), rtol=1e-5)
    # the object far from the demo's: an irrecoverable failure when asked for
    strict = ObjectTrackingReward(never_done, ObjectTrackingRewardConfig(failure_distance=1e-4))
    assert strict(batch).terminated.all()


def test_object_tracking_success_is_judged_on_the_last_step_only(always_done):
    reward_model = ObjectTrackingReward(always_done, ObjectTrackingRewardConfig(success_bonus=2.0))
    tracking = None
    for step, last in ((30, False), (40, True)):
        out = reward_model(make_batch(step=step, num_steps=32, last=last))
        tracking = np.exp(-out.info["object_distance"] / 0.02)
        assert (out.info["success_probability"] > 0.99).all()  # the frame looks done either way
        assert out.success.tolist() == [last] * 3  # but only the last step's frame is the verdict
        np.testing.assert_allclose(out.reward, tracking + (2.0 if last else 0.0), rtol=1e-5)
    assert ObjectTrackingRewardConfig().success_bonus == 10.0
    mixed = make_batch(step=40, last=False)
    mixed.last = np.array([True, False, True])
    assert reward_model(mixed).success.tolist() == [True, False, True]
    # an irrecoverable failure is never a success, even on the last step
    strict = ObjectTrackingReward(always_done, ObjectTrackingRewardConfig(failure_distance=1e-4))
    out = strict(make_batch(step=40, last=True))
    assert out.terminated.all() and not out.success.any()


def test_state_tracking_reward_reads_the_object_state_and_the_tasks_rule():
    reward_model = StateTrackingReward(ObjectTrackingRewardConfig(sigma=0.05, success_bonus=3.0))
    batch = make_batch(step=32, num_steps=32, last=True)  # tasks: lift_apple, lift_can, push_box
    rest = [episode.scene.object_rest_z for episode in batch.episodes]
    mark = np.asarray(batch.episodes[2].scene.mark_xy)
    batch.object_position = np.array([[0.1, 0.0, rest[0] + 0.08],  # lifted 8 cm: a success
                                      [0.1, 0.0, rest[1] + 0.03],  # 3 cm: not high enough
                                      [mark[0] + 0.01, mark[1], rest[2]]], np.float32)  # 1 cm from the mark
    out = reward_model(batch)
    distance = np.linalg.norm(batch.object_position - [[0.1, 0.0, 0.0]], axis=1)
    np.testing.assert_allclose(out.info["object_distance"], distance, rtol=1e-5)
    assert out.success.tolist() == [True, False, True]
    np.testing.assert_allclose(out.reward, np.exp(-distance / 0.05) + 3.0 * out.success, rtol=1e-5)
    batch.last = np.zeros(3, bool)  # the same state before the last step: no verdict
    assert not reward_model(batch).success.any()
    batch.object_position[1] = np.nan  # a world model that predicts no object state
    with pytest.raises(ValueError, match="predicts no object state; use reward_model='object_tracking'"):
        reward_model(batch)


def test_success_classifier_reward(always_done, never_done):
    out = SuccessClassifierReward(always_done)(make_batch())
    assert not out.success.any() and (out.reward == 0).all()  # not the last step: no verdict yet
    out = SuccessClassifierReward(always_done)(make_batch(last=True))
    assert out.success.all() and (out.reward == 1).all()
    out = SuccessClassifierReward(never_done, SuccessClassifierRewardConfig(dense=True))(make_batch(last=True))
    assert not out.success.any() and np.allclose(out.reward, out.info["success_probability"])


def test_reward_input_without_last_means_no_row_is_on_its_last_step():
    batch = make_batch()
    batch = RewardInput(batch.frames, batch.state, batch.action, batch.target, batch.step, batch.object_position,
                        batch.episodes)
    assert batch.last.tolist() == [False, False, False]


def test_reward_config_validation():
    with pytest.raises(ValueError, match="sigma"):
        ObjectTrackingRewardConfig(sigma=0)
    with pytest.raises(ValueError, match="threshold"):
        SuccessClassifierRewardConfig(threshold=2)


def test_callable_reward():
    out = CallableReward(lambda batch: batch.state[:, 0] + 1)(make_batch())
    assert isinstance(out, RewardOutput) and (out.reward == 1).all()
    with pytest.raises(TypeError):
        CallableReward(3)


def test_estimators_are_loaded_once_per_folder(never_done):
    assert load_estimator(never_done) is load_estimator(never_done)
    from psi_gym.rewards.object_state import default_estimator_path

    if not (default_estimator_path() / "config.json").is_file():
        with pytest.raises(FileNotFoundError, match="train-estimator"):
            load_estimator("default")


def test_new_estimator_weights_in_a_loaded_folder_are_seen(tmp_path):
    folder = save_tiny_estimator(tmp_path / "estimator", success_bias=-10.0)
    before = load_estimator(str(folder))
    save_tiny_estimator(folder, success_bias=10.0)  # retrained into the same folder
    after = load_estimator(str(folder))
    assert after is not before
    frames = np.zeros((1, 64, 64, 3), np.uint8)
    assert before.success_probability(frames, "lift_apple") < 0.5 < after.success_probability(frames, "lift_apple")


# ------------------------------------------------------------------------------ resolution
def constant_reward(batch):
    return np.full(len(batch), 0.5, np.float32)


class ConstantReward:
    def __call__(self, batch):
        return RewardOutput(np.full(len(batch), 0.25, np.float32))


def test_resolution_of_every_accepted_form(never_done):
    instance = ConstantReward()
    assert resolve_reward_model(instance) is instance
    assert isinstance(resolve_reward_model("object_tracking", never_done), ObjectTrackingReward)
    assert isinstance(resolve_reward_model("success_classifier", never_done), SuccessClassifierReward)
    assert isinstance(resolve_reward_model("state_tracking", never_done), StateTrackingReward)
    assert isinstance(resolve_reward_model(f"{__name__}:ConstantReward"), ConstantReward)
    assert isinstance(resolve_reward_model(f"{__name__}:constant_reward"), CallableReward)
    assert isinstance(resolve_reward_model(constant_reward), CallableReward)
    assert isinstance(resolve_reward_model(lambda batch: 0.0), CallableReward)


@pytest.mark.parametrize(
    "spec, error, match",
    [
        ("shiny", ValueError, "unknown reward model 'shiny': expected one of \\['calibrated_state', 'object_tracking', 'state_tracking', 'success_classifier'\\]"),
        ("no_such_module:Reward", ValueError, "cannot import"),
        ("psi_gym.rewards:NoSuchReward", ValueError, "no attribute"),
        (3, TypeError, "callable"),
        (ConstantReward, TypeError, "instance"),
    ],
)
def test_resolution_errors(spec, error, match):
    with pytest.raises(error, match=match):
        resolve_reward_model(spec)


@pytest.mark.parametrize("form", ["instance", "name", "state_name", "dotted_class", "dotted_function", "function"])
def test_env_accepts_every_form(form, never_done):
    spec = {
        "instance": ConstantReward(),
        "name": "object_tracking",
        "state_name": "state_tracking",
        "dotted_class": f"{__name__}:ConstantReward",
        "dotted_function": f"{__name__}:constant_reward",
        "function": constant_reward,
    }[form]
    env = gym.make("PsiW0-Retarget-v0", world_model="random:debug", estimator=never_done, reward_model=spec)
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(np.zeros(22, np.float32))
    assert np.isfinite(reward) and not terminated
    if form in ("name", "state_name"):
        assert 0 < reward <= 1 and "object_distance" in info
