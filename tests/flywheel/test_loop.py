"""One tiny flywheel iteration end to end (untrained debug W0, random estimator, a tiny R2), its resume,
the write-back on hand-made data, and the robot and the judge kept apart."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from psi_gym.agents.policy import PsiR2Policy, debug_policy_config
from psi_gym.cli import main
from psi_gym.data.lerobot import EpisodeDataset
from psi_gym.flywheel.buffer import FlywheelBuffer, Provenance
from psi_gym.flywheel.loop import TABLE_COLUMNS, blind_retarget, make_demos


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory):
    folder = tmp_path_factory.mktemp("r2") / "tiny"
    PsiR2Policy.from_policy_config(debug_policy_config(architecture="cnn")).save_pretrained(folder)
    return folder


TINY = ["--demos-per-iteration", "3", "--heldout-demos", "2", "--ranking-candidates", "2", "--variations", "1",
        "--population", "2", "--search-iterations", "1", "--elites", "1", "--consistency-reruns", "2",
        "--min-quality", "0", "--bc-steps", "2", "--w0-steps", "2", "--w0-batch-size", "2", "--w0-rehearsal", "2",
        "--world-model", "random:debug", "--estimator", "random", "--videos", "1", "--no-progress"]


def test_one_tiny_flywheel_iteration_and_its_resume(tmp_path, tiny_policy, capsys):
    out = tmp_path / "run"
    argv = ["flywheel", "--iterations", "1", "--robot-episodes", "2", "--out", str(out), "--policy", str(tiny_policy),
            *TINY, "--json"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)  # stdout holds exactly the JSON summary
    assert "robot (robot episodes per iteration: 2)" in captured.err and "no_robot" in captured.err
    assert set(summary["variants"]) == {"robot", "no_robot"}
    robot, no_robot = summary["variants"]["robot"]["iterations"], summary["variants"]["no_robot"]["iterations"]
    assert [r["iteration"] for r in robot] == [0, 1] == [r["iteration"] for r in no_robot]
    first = robot[1]
    assert {key for key, _ in TABLE_COLUMNS} <= set(first)
    assert {"funnel", "ranking", "kept_by_source", "quality_by_tier", "demo_quality", "seconds"} <= set(first)
    assert first["candidates"] == first["demos"] * 3  # raw, refined, one varied start each
    by_task = first["filters_by_task"]  # the same filters' figures, one task's candidates at a time
    assert by_task and set(by_task) <= {"lift_apple", "lift_can", "push_box"}
    assert sum(f["candidates"] for f in by_task.values()) == first["candidates"]
    assert sum(f["kept"] for f in by_task.values()) == first["kept"]
    kept_successes = sum(f["kept_judge_successes"] for f in by_task.values())
    assert kept_successes == round((first["filter_precision"] or 0.0) * first["kept"])
    assert all(f["kept_judge_successes"] <= min(f["kept"], f["judge_successes"]) for f in by_task.values())
    assert first["robot_episodes"] == 2 and no_robot[1]["robot_episodes"] == 0
    assert 0.0 <= first["r2_sim_success"] <= 1.0 and first["ranking"]["candidates_per_demo"] == 2
    # both variants refined iteration 1 with the same W0: the same candidates, the same filter verdicts
    assert first["funnel"] == no_robot[1]["funnel"]
    assert summary["gain"]["robot"] == first["r2_sim_success"] - robot[0]["r2_sim_success"]

    # the run folder: the buffer (human demos, kept trajectories, the robot's episodes), datasets, models
    buffer = FlywheelBuffer.read(out / "robot" / "buffer")
    sources = [r.source for r in buffer.records]
    assert sources.count("robot_episode") == 2 and sources.count("human_demo") == first["demos"]
    assert sum(s in ("retargeted", "refined_w0", "scene_variation") for s in sources) == first["kept"]
    assert all(r.iteration == 1 for r in buffer.records)
    human = buffer.select(sources=["human_demo"])[0]  # converted by W0: robot frames, the human's touch beside
    assert human.embodiment == "robot" and buffer.rows(human)["tactile_mask"].all()
    assert human.scores["demo_quality"] == first["demo_quality"][human.demo_id]
    robot_episode = buffer.episode(buffer.select(sources=["robot_episode"])[0])
    assert robot_episode.metadata["role"] == "robot" and robot_episode.source == "rollout"
    assert len(EpisodeDataset(out / "robot" / "iteration-1" / "data" / "robot")) == 2
    assert (out / "robot" / "iteration-1" / "w0" / "final" / "config.json").is_file()
    assert (out / "robot" / "iteration-1" / "r2" / "final" / "config.json").is_file()
    assert (out / "flywheel.png").stat().st_size > 1000 and (out / "summary.json").is_file()

    # rerun: every iteration is done, nothing is redone, the same numbers come back
    assert main(argv) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["variants"] == summary["variants"]
    assert len(FlywheelBuffer.read(out / "robot" / "buffer")) == len(buffer)

    # an iteration killed before it finished is run again from the buffer as it started it
    (out / "robot" / "iteration-1" / "report.json").unlink()
    assert main(argv) == 0
    redone = json.loads(capsys.readouterr().out)["variants"]["robot"]["iterations"][1]
    assert redone["buffer_trajectories"] == first["buffer_trajectories"] == len(buffer)  # not twice the trajectories
    assert len(FlywheelBuffer.read(out / "robot" / "buffer")) == len(buffer)

    # another configuration in the same folder is refused, naming the way out
    assert main([*argv[:-1], "--seed", "3"]) == 2
    assert "another configuration" in capsys.readouterr().err


@pytest.mark.parametrize("flag, value", [("--world-model", "/no/such/w0"), ("--policy", "/no/such/r2"),
                                         ("--iterations", "0"), ("--min-quality", "2"), ("--estimator", "/none"),
                                         ("--second-opinion", "/no/such/w0"), ("--reward-model", "nosuch"),
                                         ("--min-success-probability", "1.5"), ("--refit-calibrator", None),
                                         ("--calibration-pools", "31")])
def test_bad_input_is_one_line_naming_the_flag(tmp_path, capsys, flag, value):
    assert main(["flywheel", "--out", str(tmp_path / "run"), flag, *([] if value is None else [value])]) == 2
    err = capsys.readouterr().err
    assert flag in err and len(err.strip().splitlines()) == 1


def test_write_back_exports_and_retrains_both_models(tmp_path, tiny_policy):
    from psi_gym.flywheel.writeback import (
        RetrainConfig,
        export_datasets,
        finetune_w0,
        human_demo_sources,
        read_exported,
        rehearsal_episodes,
        retrain_r2,
    )
    from psi_gym.world_model import load_world_model

    demos = make_demos(4242, range(2), 0)
    kept = [demo.start.replace(source="generated", success=True) for demo in demos]  # stand-ins for kept trajectories
    with FlywheelBuffer.open(tmp_path / "buffer", capacity=1000) as buffer:
        buffer.extend([(e, Provenance("refined_w0", d.demo_id, 1)) for e, d in zip(kept, demos)]
                      + [(kept[0].replace(success=False), Provenance("robot_episode", demos[0].demo_id, 1))])
        exported = export_datasets(buffer, tmp_path / "data")
    assert exported.kept_trajectories == 2 and exported.robot_episodes == 1
    kept_back, robot_back = read_exported(exported)
    assert len(kept_back) == 2 and "reference" in kept_back[0].metadata

    config = RetrainConfig(bc_steps=2, bc_batch_size=4, w0_steps=2, w0_batch_size=2, w0_dynamics_batch_size=3,
                           w0_perception_batch_size=2)
    with FlywheelBuffer.open(tmp_path / "buffer") as buffer:
        touch = np.ones((kept[1].num_steps + 1, 5), np.float32)
        buffer.extend([(kept[1], Provenance("human_demo", demos[1].demo_id, 1))])
        buffer.add(kept[1].replace(success=False), Provenance("human_demo", demos[1].demo_id, 1), tactile=touch)
        buffer.commit()
        anchors = human_demo_sources(buffer)
    assert [a.touch is None for a in anchors] == [True, False] and anchors[1].touch.all()
    # the raw retarget's actions are labels only where W0 says it succeeds; the touch stays either way
    assert [a.action_labels for a in anchors] == [True, False]
    from psi_gym.agents.behavior_cloning import build_samples
    samples = build_samples(anchors, PsiR2Policy.from_pretrained(str(tiny_policy)).policy_config)
    first = len(anchors[0].joint_targets)
    assert samples.action_mask[:first].any() and not samples.action_mask[first:].any()
    assert samples.touch_mask[first:].all()
    assert anchors[0].kind == "human_demo" and len(anchors[0].reference) == len(kept[1].metadata["reference"])
    policy, summary = retrain_r2(PsiR2Policy.from_pretrained(str(tiny_policy)), kept_back, robot_back, config,
                                 tmp_path / "r2", seed=0, human_demos=anchors)
    assert summary["trajectories"] == 4 and summary["human_demos"] == 2  # the robot's failure is not cloned
    assert (tmp_path / "r2" / "final" / "config.json").is_file()
    load_world_model("random:debug", device="cpu").save_pretrained(tmp_path / "w0-start")
    rehearsal = rehearsal_episodes(2)
    folder, w0_summary = finetune_w0(tmp_path / "w0-start", kept_back, robot_back, config, tmp_path / "w0", seed=0,
                                     rehearsal=rehearsal)
    assert folder == tmp_path / "w0" / "final" and (folder / "config.json").is_file()
    assert w0_summary["episodes"] == 3 and w0_summary["robot_episodes"] == 1 and w0_summary["steps"] == 2
    # the dynamics learns from the robot's episode with W0's training data beside it; the looks without it
    assert w0_summary["appearance"]["num_episodes"] == 3 and w0_summary["physics"]["num_episodes"] == 3
    assert w0_summary["rehearsal_episodes"] == 2
    looks = json.loads(next((tmp_path / "w0" / "appearance").glob("checkpoint-*/trainer_state.json")).read_text())["config"]
    physics = json.loads(next((tmp_path / "w0").glob("checkpoint-*/trainer_state.json")).read_text())["config"]
    assert looks["init_from"] == str(tmp_path / "w0-start") and looks["parts"] == ["renderer", "perception"]
    assert physics["parts"] == ["dynamics"] and physics["unroll_schedule"] == [[0.0, 0]]
    assert (looks["batch_size"], physics["dynamics_batch_size"], looks["perception_batch_size"]) == (2, 3, 2)
    start, tuned = load_world_model(str(tmp_path / "w0-start"), device="cpu"), load_world_model(str(folder), device="cpu")
    assert start.model_config == tuned.model_config  # the same architecture, other weights: fine-tuned
    moved = {name for name, weight in tuned.state_dict().items()
             if not torch.equal(weight, start.state_dict()[name])}
    assert any(name.startswith("dynamics.") for name in moved) and any(name.startswith("transformer.") for name in moved)
    assert any(name.startswith("perception.") for name in moved)
    # without robot episodes the dynamics is not trained on W0's own predictions
    looks_only, summary = finetune_w0(tmp_path / "w0-start", kept_back, [], config, tmp_path / "w0-kept", seed=0,
                                      rehearsal=rehearsal)
    assert looks_only == tmp_path / "w0-kept" / "final" and summary["physics"] is None
    assert summary["rehearsal_episodes"] == 0
    kept_tuned = load_world_model(str(looks_only), device="cpu").state_dict()
    assert all(torch.equal(kept_tuned[name], weight) for name, weight in start.state_dict().items()
               if name.startswith("dynamics."))
    same, nothing = finetune_w0(tmp_path / "w0-start", [], [], config, tmp_path / "w0-none", seed=0)
    assert same == tmp_path / "w0-start" and nothing is None


def test_the_retarget_replay_outcome_is_blanked():
    demo = make_demos(4242, [0], 0)[0]
    assert demo.start.success is False
    assert (demo.start.frames == demo.start.frames[0]).all()
    assert (demo.start.object_pose == demo.start.object_pose[0]).all()
    assert blind_retarget(demo.start).metadata["reference"] == demo.start.metadata["reference"]


def test_robot_and_judge_are_kept_apart(tiny_policy):
    import gymnasium as gym
    from gymnasium.vector import AutoresetMode

    from psi_gym.agents.rollouts import demo_refs
    from psi_gym.flywheel.judge import policy_success
    from psi_gym.flywheel.robot import deploy_policy, make_robot_env
    from psi_gym.flywheel.rollouts import run_episodes

    demos = [d.start for d in make_demos(4242, range(2), 0)]
    judge = gym.make_vec("PsiSim-Retarget-v0", num_envs=2, autoreset_mode=AutoresetMode.DISABLED, demos=demos,
                         role="judge", successful_demos_only=False)
    policy = PsiR2Policy.from_pretrained(str(tiny_policy))
    with pytest.raises(ValueError, match="judge"):
        run_episodes(judge, demo_refs(judge), [0, 1], plans=[np.zeros((40, 22), np.float32)] * 2)
    with pytest.raises(ValueError, match="robot role"):
        deploy_policy(judge, policy, 2, seed=0, exploration=0.3)
    robot = make_robot_env(demos, num_envs=2)
    rollouts = deploy_policy(robot, policy, 3, seed=0, exploration=0.3)
    assert len(rollouts) == 3 and all(r.episode.metadata["role"] == "robot" for r in rollouts)
    assert {r.episode.parent for r in rollouts} == {demo.parent for demo in demos}
    with pytest.raises(ValueError, match="judge"):
        policy_success(robot, demo_refs(robot), [0, 1], lambda obs, rows: np.zeros((2, 22), np.float32))


def test_flywheel_example_smoke(tmp_path):
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "flywheel.py"
    spec = importlib.util.spec_from_file_location("example_flywheel", path)
    example = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = example  # dataclasses look their module up there
    spec.loader.exec_module(example)
    rows = example.main(example.Args(iterations=1, demos=2, heldout_demos=2, robot_episodes=1, population=2,
                                     search_iterations=1, bc_steps=2, w0_steps=2, w0_rehearsal=2, world_model="random:debug",
                                     estimator="random", policy_architecture="cnn", out=str(tmp_path / "run")))
    assert [row["iteration"] for row in rows] == [0, 1]
    assert set(rows[1]) == {"iteration", "kept", "filter_precision", "w0_false_success_rate", "w0_spearman",
                            "r2_sim_success"}
    assert len(FlywheelBuffer.read(tmp_path / "run" / "buffer").select(sources=["robot_episode"])) == 1


def test_the_w0_env_of_the_flywheel_uses_its_reward_model():
    """``--reward-model`` reaches every W0 env the loop makes (search, filters, ranking test), unless one names its own."""
    from psi_gym.flywheel.loop import FlywheelConfig, _w0_env
    from psi_gym.rewards import CalibratedStateReward, ObjectTrackingReward, StateTrackingReward

    demos = [demo.start for demo in make_demos(4242, [0], 0)]
    for name, kind in (("object_tracking", ObjectTrackingReward), ("calibrated_state", CalibratedStateReward)):
        env = _w0_env(FlywheelConfig(reward_model=name, estimator="random"), "random:debug", demos, 1)
        assert isinstance(env.unwrapped.core.reward_model, kind)
        env.close()
    env = _w0_env(FlywheelConfig(reward_model="calibrated_state"), "random:debug", demos, 1, reward_model="state_tracking")
    assert isinstance(env.unwrapped.core.reward_model, StateTrackingReward)
    env.close()


def test_a_refit_calibrator_is_written_for_the_fine_tuned_w0_and_read_by_its_envs(tmp_path, tiny_policy, capsys):
    """``--refit-calibrator``: after the W0 fine-tune a calibrator fitted on that W0's paths is saved in the
    iteration, named in its report (so a resumed run reads it), and the W0 env made with it pays its probability."""
    from psi_gym.flywheel.loop import FlywheelConfig, _w0_env
    from psi_gym.rewards import CalibratedStateReward
    from psi_gym.rewards.success_calibration import load_calibrator

    out = tmp_path / "run"
    argv = ["flywheel", "--iterations", "1", "--robot-episodes", "2", "--no-comparison", "--out", str(out), "--policy",
            str(tiny_policy), *TINY, "--reward-model", "calibrated_state", "--refit-calibrator", "--calibration-pools",
            "5:3", "--json"]
    assert main(argv) == 0
    row = json.loads(capsys.readouterr().out)["variants"]["robot"]["iterations"][1]
    path = out / "robot" / "iteration-1" / "calibrator.safetensors"
    assert row["calibrator"] == str(path) and row["calibrator_refit"]["rows"] == 3 * 16
    assert 0 < row["calibrator_refit"]["success_rate"] < 1  # the pool's simulator verdicts, both kinds
    calibrator = load_calibrator(path)
    assert calibrator.metadata["world_model"] == str(out / "robot" / "iteration-1" / "w0" / "final")
    assert (out / "calibration-pools" / "sim-s5-3x16.npz").is_file()  # replayed once, read by every later refit
    demos = [demo.start for demo in make_demos(4242, [0], 0)]
    env = _w0_env(FlywheelConfig(reward_model="calibrated_state"), "random:debug", demos, 1, str(path))
    reward = env.unwrapped.core.reward_model
    assert isinstance(reward, CalibratedStateReward)
    assert torch.equal(reward.calibrator.mlps[0][0].weight, calibrator.mlps[0][0].weight)
    env.close()


def test_consistency_reruns_start_from_the_demo_with_perceived_object_shifted(monkeypatch):
    """A rerun from the same start with another seed has W0's predicted state by construction (its
    state is read off the first frame and advanced deterministically), so the flywheel's consistency
    reruns start from the demo's own start with W0's reading of the object shifted (the env's
    ``object_shift`` reset option), a new shift for every rerun, which changes that state."""
    import gymnasium as gym
    from gymnasium.vector import AutoresetMode

    from psi_gym.agents import rollouts
    from psi_gym.agents.search import SearchConfig
    from psi_gym.flywheel import loop
    from psi_gym.flywheel.loop import FlywheelConfig, refine_and_filter
    from psi_gym.world_model import load_world_model

    demos = make_demos(4242, [0], 0)
    world_model = load_world_model("random:debug", device="cpu")
    env = gym.make_vec("PsiW0-Retarget-v0", num_envs=2, autoreset_mode=AutoresetMode.DISABLED,
                       world_model=world_model, estimator="random", demos=[demos[0].start], successful_demos_only=False)
    base = rollouts.demo_refs(env)[0]
    plan = np.zeros((base.horizon, 22), np.float32)
    same_start, other_seed = rollouts.run_plans_in_env(env, [base] * 2, [plan] * 2, [1, 2], record_episodes=True).episodes
    np.testing.assert_array_equal(same_start.state, other_seed.state)
    np.testing.assert_array_equal(same_start.object_pose, other_seed.object_pose)
    env.close()

    reruns = []
    real = rollouts.run_plans_in_env

    def recorded(env, rows, plans, seeds, **kwargs):
        result = real(env, rows, plans, seeds, record_episodes=True, **kwargs)
        reruns.append(([row.demo_id for row in rows], list(seeds), kwargs.get("object_shifts"), result.episodes))
        return result

    monkeypatch.setattr(rollouts, "run_plans_in_env", recorded)  # only the consistency reruns call it from here

    monkeypatch.setattr(loop, "SuccessFilter", EveryCandidate)  # all go to the reruns
    config = FlywheelConfig(demos_per_iteration=1, heldout_demos=1, variations=1, consistency_reruns=2,
                            consistency_noise=0.004, min_quality=0.0,
                            search=SearchConfig(population=2, iterations=1, elites=1),
                            world_model="random:debug", estimator="random", progress=False)
    outcome = refine_and_filter(config, "random:debug", demos, 1, {}, np.random.default_rng(0), lambda message: None)
    rerun = [c for c in outcome.candidates if "consistency" in c.scores]
    rows = [demo_id for ids, _, _, _ in reruns for demo_id in ids]
    seeds = [seed for _, batch, _, _ in reruns for seed in batch]
    shifts = np.concatenate([batch for _, _, batch, _ in reruns])
    episodes = [episode for _, _, _, batch in reruns for episode in batch]
    assert len(rerun) == len(outcome.candidates) == 3  # raw, refined, one varied start
    assert len(rows) == 2 * len(rerun) and len(set(seeds)) == len(seeds)
    assert set(rows) == {demos[0].demo_id}  # the demo's own start, also for the varied start's plan
    assert shifts.shape == (6, 2) and len({tuple(shift) for shift in shifts}) == 6  # a new shift for every rerun
    assert 0 < np.abs(shifts).max() < 0.02  # a few mm
    for shift, episode in zip(shifts, episodes):  # W0 starts from its reading, moved, and plays the episode from there
        np.testing.assert_allclose(episode.object_pose[0, :3] - same_start.object_pose[0, :3], [*shift, 0.0], atol=1e-6)
    with pytest.raises(ValueError, match="consistency_noise"):
        FlywheelConfig(consistency_noise=-0.001)


def test_second_opinions_rerun_each_plan_in_the_other_w0s_from_the_demos_start(monkeypatch):
    """FlywheelConfig.second_opinions: each candidate that reaches the filter is run again in every
    other W0, from its demo's own start, judged on that W0's tracked state; kept only if all agree."""
    from psi_gym.agents import rollouts
    from psi_gym.agents.search import SearchConfig
    from psi_gym.flywheel import loop
    from psi_gym.flywheel.loop import FlywheelConfig, refine_and_filter

    demos = make_demos(4242, [0], 0)
    calls = []
    real = rollouts.run_plans_in_env

    def recorded(env, rows, plans, seeds, **kwargs):
        result = real(env, rows, plans, seeds, **kwargs)
        calls.append(([row.demo_id for row in rows], type(env.unwrapped.core.reward_model).__name__))
        result.success[:] = len(calls) == 1  # the first W0 says success, the second does not
        return result

    monkeypatch.setattr(rollouts, "run_plans_in_env", recorded)  # only the second opinions call it from here

    monkeypatch.setattr(loop, "SuccessFilter", EveryCandidate)  # all go to the reruns
    config = FlywheelConfig(demos_per_iteration=1, heldout_demos=1, variations=1, consistency_reruns=0, min_quality=0.0,
                            second_opinions=("random:debug", "random:debug"),
                            search=SearchConfig(population=2, iterations=1, elites=1),
                            world_model="random:debug", estimator="random", progress=False)
    outcome = refine_and_filter(config, "random:debug", demos, 1, {}, np.random.default_rng(0), lambda message: None)
    assert len(calls) == 2  # one batch per other W0
    assert all(ids == [demos[0].demo_id] * 3 and reward == "StateTrackingReward" for ids, reward in calls)
    assert [c.scores["second_opinion"] for c in outcome.candidates] == [0.5] * 3  # one of two agreed
    names = [name for name, _ in outcome.stages]
    assert names == ["demo_quality", "success", "consistency", "second_opinion", "dedupe"]
    assert not outcome.keep.any()  # not unanimous: nothing kept
    assert FlywheelConfig(second_opinions=["a"]).second_opinions == ("a",)


class EveryCandidate:
    """In place of `SuccessFilter`: W0's verdict waived (an untrained W0 calls nothing a success)."""

    name = "success"

    def __init__(self, min_return):
        pass

    def __call__(self, candidates):
        return np.ones(len(candidates), bool)


def test_the_calibrated_success_filter_runs_after_w0s_verdict_and_before_the_reruns(monkeypatch):
    from psi_gym.agents.search import SearchConfig
    from psi_gym.flywheel import loop
    from psi_gym.flywheel.loop import FlywheelConfig, refine_and_filter

    monkeypatch.setattr(loop, "SuccessFilter", EveryCandidate)
    config = FlywheelConfig(demos_per_iteration=1, heldout_demos=1, variations=1, consistency_reruns=1, min_quality=0.0,
                            min_success_probability=0.0, search=SearchConfig(population=2, iterations=1, elites=1),
                            world_model="random:debug", estimator="random", progress=False)
    outcome = refine_and_filter(config, "random:debug", make_demos(4242, [0], 0), 1, {}, np.random.default_rng(0),
                                lambda message: None)
    names = [name for name, _ in outcome.stages]
    assert names.index("success") < names.index("calibrated_success") < names.index("consistency")
    assert all(0.0 <= c.scores["calibrated_success"] <= 1.0 for c in outcome.candidates)
    with pytest.raises(ValueError, match="min_success_probability"):
        FlywheelConfig(min_success_probability=2.0)
