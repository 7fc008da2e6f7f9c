"""Each filter on hand-made candidates; the chain's funnel; precision and recall; data quality; variations."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from psi_gym.data.episode import Episode
from psi_gym.flywheel.filters import (
    Candidate,
    ConsistencyFilter,
    DedupeFilter,
    DemoQualityFilter,
    FilterChain,
    SuccessFilter,
    trajectory_distance,
)
from psi_gym.flywheel.judge import filter_funnel, precision_recall
from psi_gym.flywheel.quality import demo_quality, tracking_error
from psi_gym.flywheel.variation import object_mask, vary_demo, vary_frame
from psi_gym.sim.hands import hand_spec, residual_scale

SCALE = residual_scale(hand_spec("robot")).astype(np.float32)


def episode(targets: np.ndarray, success: bool = True, predicted: np.ndarray | None = None) -> Episode:
    steps = len(targets)
    state = np.concatenate([targets[:1], targets if predicted is None else predicted]).astype(np.float32)
    return Episode(task="lift_apple", instruction="lift the apple", embodiment="robot",
                   frames=np.zeros((steps + 1, 8, 8, 3), np.uint8), state=state, action=targets.astype(np.float32),
                   object_pose=np.zeros((steps + 1, 7), np.float32), success=success, scene={})


def candidate(demo_id: str = "d0", success: bool = True, w0_return: float = 10.0, offset: float = 0.0,
              source: str = "refined_w0") -> Candidate:
    targets = np.tile(SCALE * offset, (6, 1)).astype(np.float32)
    return Candidate(episode(targets, success), source, demo_id, 1, w0_return, np.zeros((6, 22), np.float32))


def test_success_filter_reads_w0_verdict_and_return():
    candidates = [candidate(success=True, w0_return=12), candidate(success=False, w0_return=30),
                  candidate(success=True, w0_return=4)]
    np.testing.assert_array_equal(SuccessFilter()(candidates), [True, False, True])
    np.testing.assert_array_equal(SuccessFilter(min_return=10)(candidates), [True, False, False])
    assert [c.scores["success"] for c in candidates] == [12, 30, 4]


def test_calibrated_success_filter_reads_w0s_object_path_in_the_trajectory():
    """The shipped calibrator on hand-made lifts: held 10 cm (kept) against never lifted and dropped at the end."""
    from psi_gym.agents.rollouts import DemoRef
    from psi_gym.flywheel.filters import CalibratedSuccessFilter
    from psi_gym.sim.scene import SceneParams

    scene = SceneParams(task="lift_apple", object_kind="apple", object_size=[0.04], object_mass=0.1, object_friction=1.0,
                        object_xy=[0.0, 0.0], object_yaw=0.0)
    rest, steps = scene.object_rest_z, 40

    def path(lift: float, drop_at: int | None = None) -> np.ndarray:
        z = rest + lift * np.clip(np.arange(steps + 1) / (steps / 2), 0, 1)
        if drop_at is not None:
            z[drop_at:] = rest
        pose = np.zeros((steps + 1, 7), np.float32)
        pose[:, 2], pose[:, 3] = z, 1.0
        return pose

    demo = DemoRef(0, "d0", "lift_apple", scene.to_dict(), np.zeros(22, np.float32), np.zeros((steps + 1, 22), np.float32),
                   path(0.10), steps)  # the human raised the apple 10 cm and held it
    candidates = []
    for lift, drop_at in ((0.10, None), (0.0, None), (0.10, 36)):
        made = candidate()
        made.episode = made.episode.replace(object_pose=path(lift, drop_at))
        made.demo = demo
        candidates.append(made)
    keep = CalibratedSuccessFilter(0.8)(candidates)
    np.testing.assert_array_equal(keep, [True, False, False])
    assert candidates[0].scores["calibrated_success"] > 0.9 > 0.5 > candidates[1].scores["calibrated_success"]
    np.testing.assert_array_equal(CalibratedSuccessFilter(0.0)(candidates), [True, True, True])
    with pytest.raises(ValueError, match="demo"):
        CalibratedSuccessFilter(0.5)([candidate()])
    with pytest.raises(ValueError, match="min_probability"):
        CalibratedSuccessFilter(1.5)


def test_consistency_filter_keeps_what_w0_agrees_on_and_reruns_once():
    calls = []

    def rerun(todo):
        calls.append(len(todo))
        table = {"a": [True, True], "b": [True, False], "c": [False, False]}
        return np.array([table[c.demo_id] for c in todo])

    candidates = [candidate("a"), candidate("b"), candidate("c")]
    np.testing.assert_array_equal(ConsistencyFilter(rerun, 1.0)(candidates), [True, False, False])
    assert [c.scores["consistency"] for c in candidates] == [1.0, 0.5, 0.0]
    np.testing.assert_array_equal(ConsistencyFilter(rerun, 0.5)(candidates), [True, True, False])
    assert calls == [3]  # the scores were kept: no second rerun
    with pytest.raises(ValueError, match="reruns"):
        ConsistencyFilter(lambda todo: np.ones(len(todo), bool))([candidate("z")])


def test_demo_quality_filter():
    candidates = [candidate("good"), candidate("bad"), candidate("good", source="scene_variation")]
    keep = DemoQualityFilter({"good": 0.7, "bad": 0.3}, min_quality=0.5)(candidates)
    np.testing.assert_array_equal(keep, [True, False, True])
    assert candidates[1].scores["demo_quality"] == 0.3
    with pytest.raises(KeyError, match="unknown"):
        DemoQualityFilter({}, 0.5)([candidate("unknown")])


def test_dedupe_keeps_the_best_of_near_duplicates_per_demo_and_skips_what_the_buffer_holds():
    candidates = [
        candidate("d0", w0_return=5, offset=0.0),
        candidate("d0", w0_return=9, offset=0.01),  # a near copy of the first, better: it stays, the first goes
        candidate("d0", w0_return=1, offset=0.5),  # far enough
        candidate("d1", w0_return=1, offset=0.0),  # same targets, another demo
        candidate("d2", w0_return=7, offset=0.2),  # a copy of what the buffer holds for d2
    ]
    existing = {"d2": [np.tile(SCALE * 0.2, (6, 1))]}
    keep = DedupeFilter(min_distance=0.05, existing=existing)(candidates)
    np.testing.assert_array_equal(keep, [False, True, True, True, False])
    assert candidates[0].scores["dedupe"] == pytest.approx(0.01, abs=1e-4)
    assert candidates[2].scores["dedupe"] == pytest.approx(0.49, abs=1e-3)
    assert np.isinf(candidates[3].scores["dedupe"])
    assert trajectory_distance(np.zeros((4, 22)), np.tile(SCALE, (6, 1))) == pytest.approx(1.0)


def test_chain_runs_each_filter_on_the_survivors_and_reports_the_funnel():
    seen = []

    def rerun(todo):
        seen.extend(c.demo_id for c in todo)
        return np.ones((len(todo), 2), bool)

    candidates = [candidate("a", success=True), candidate("b", success=False), candidate("c", success=True),
                  candidate("low", success=True)]
    chain = FilterChain([DemoQualityFilter({"a": 1, "b": 1, "c": 1, "low": 0}, 0.5), SuccessFilter(),
                         ConsistencyFilter(rerun), DedupeFilter(0.05)])
    result = chain(candidates)
    assert seen == ["a", "c"]  # the costly filter saw only the survivors
    np.testing.assert_array_equal(result.keep, [True, False, True, False])
    assert [name for name, _ in result.stages] == ["demo_quality", "success", "consistency", "dedupe"]
    truth = np.array([True, True, False, False])
    assert precision_recall(result.keep, truth) == {"candidates": 4, "kept": 2, "judge_successes": 2,
                                                    "precision": 0.5, "recall": 0.5, "base_rate": 0.5}
    funnel = filter_funnel(result.stages, truth)
    assert [f["kept"] for f in funnel] == [3, 2, 2, 2] and funnel[0]["precision"] == pytest.approx(2 / 3)
    assert precision_recall(np.zeros(3, bool), np.zeros(3, bool))["precision"] is None


def test_filters_never_read_the_judge():
    """The filters' module imports nothing that replays in the simulator."""
    source = Path(__file__).resolve().parents[2] / "psi_gym" / "flywheel" / "filters.py"
    imported = {node.module for node in ast.walk(ast.parse(source.read_text())) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(ast.parse(source.read_text())) if isinstance(node, ast.Import)
                 for alias in node.names}
    assert not {"psi_gym.sim.verify", "psi_gym.flywheel.judge", "psi_gym.envs.sim_retarget"} & imported


def test_quality_is_how_closely_w0_says_the_robot_follows_the_demo():
    targets = np.random.default_rng(0).normal(size=(10, 22)).astype(np.float32) * SCALE
    follows = episode(targets, predicted=targets)
    lags = episode(targets, predicted=targets + 0.1 * SCALE)
    assert tracking_error(follows) == 0.0 and tracking_error(lags) == pytest.approx(0.1, rel=1e-4)
    np.testing.assert_allclose(demo_quality([follows, lags]), [1.0, np.exp(-1.0)], rtol=1e-4)


def test_variations_change_the_first_frame_only_and_find_the_object():
    from psi_gym.retarget.human_demos import make_demo
    from psi_gym.retarget.pipeline import retarget_episode

    demo = retarget_episode(make_demo("lift_can", 31, 1))
    mask = object_mask(demo.frames[0], "can")
    assert 40 < mask.sum() < 600  # the can, not the table or the hand
    rng = np.random.default_rng(0)
    varied = vary_demo(demo, "appearance", rng, "v0")
    changed = np.any(varied.frames[0] != demo.frames[0], axis=-1)
    assert changed.any() and not changed[~mask].any()  # only the object's pixels
    np.testing.assert_array_equal(varied.frames[1:], demo.frames[1:])
    assert varied.scene == demo.scene and varied.parent.endswith("~v0") and varied.metadata["varies"] == demo.parent
    frame, description = vary_frame(demo.frames[0], "frame", "can", rng)
    assert frame.shape == demo.frames[0].shape and "brightness" in description
    same, _ = vary_frame(demo.frames[0], "seed", "can", rng)
    np.testing.assert_array_equal(same, demo.frames[0])
    with pytest.raises(ValueError, match="kind"):
        vary_frame(demo.frames[0], "warp", "can", rng)
