import json

import pytest

from psi_gym.cli import main


def run_json(capsys, *argv):
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_demos_retarget_collect_render(tmp_path, capsys):
    demos = run_json(capsys, "demos", "--num", "3", "--seed", "2", "--out", str(tmp_path / "demos"))
    assert demos["episodes"] == 3 and 0.0 <= demos["human_success"] <= 1.0
    retarget = run_json(capsys, "retarget", "--demos", str(tmp_path / "demos"), "--out", str(tmp_path / "robot"))
    assert {"episodes", "human_success", "raw_retarget_success"} <= set(retarget)
    collect = run_json(capsys, "collect", "--num", "3", "--seed", "2", "--out", str(tmp_path / "rollouts"))
    assert collect["episodes"] == 3 and 0.0 <= collect["failure_fraction"] <= 1.0
    render = run_json(capsys, "render", "--episode", f"{tmp_path / 'demos'}/0", "--out", str(tmp_path / "v.mp4"), "--image-size", "64")
    assert (tmp_path / "v.mp4").stat().st_size > 1000 and render["panels"][0] == "human demo"


def test_corrupt_dataset_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "broken" / "meta").mkdir(parents=True)
    (tmp_path / "broken" / "meta" / "info.json").write_text("{not json")
    assert main(["retarget", "--demos", str(tmp_path / "broken"), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "info.json" in error and "Traceback" not in error
    assert not (tmp_path / "out").exists()


def test_unknown_task_is_refused(capsys):
    assert main(["demos", "--task", "juggle", "--out", "x"]) == 2
    error = capsys.readouterr().err
    assert "unknown task" in error and "--task" in error and len(error.strip().splitlines()) == 1


# ------------------------------------------------------------------------- bad input: exit 2, one line
@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    from psi_gym.data.lerobot import write_dataset
    from psi_gym.retarget.human_demos import make_demo
    from psi_gym.retarget.robot_rollouts import make_rollout

    folder = tmp_path_factory.mktemp("datasets")
    write_dataset(folder / "demos", [make_demo("lift_apple", 0, 0, image_size=32)])
    write_dataset(folder / "rollouts", [make_rollout(0, index) for index in range(2)])
    (folder / "file.txt").write_text("a file")
    return folder


UNWRITABLE = "/proc/psi-gym-test"  # nobody, root included, creates anything there
BAD_INPUTS = [  # the cases of issue 9 (a traceback, exit 1 or a vague or silent answer before), and more
    ("demos --num 1 --out {out} --image-size 0", "--image-size"),
    ("demos --num 1 --out {out} --image-size 100000", "--image-size"),
    ("demos --num 1 --out {out} --image-size -8", "--image-size"),
    ("demos --num 1 --out {out} --task ,", "--task"),
    ("demos --num 1 --out " + UNWRITABLE + "/demos", "--out"),
    ("demos --num 1 --out {d}/file.txt", "--out"),
    ("demos --num 0 --out {out}", "--num"),
    ("demos --num 1 --out {out} --workers 0", "--workers"),
    ("render --episode {d}/demos/0 --out " + UNWRITABLE + "/v.mp4", "--out"),
    ("render --episode {d}/demos/7 --out {out}.mp4", "--episode"),
    ("render --episode {d}/demos --out {out}.mp4", "--episode"),
    ("render --episode {d}/missing/0 --out {out}.mp4", "--episode"),
    ("retarget --demos {d}/rollouts --out {out}", "--demos"),
    ("retarget --demos {d}/missing --out {out}", "--demos"),
    ("retarget --demos {d}/demos --out {d}/demos --overwrite", "--out"),
    ("train-w0 --data {d}/rollouts --out {out} --checkpoint-every 0", "--checkpoint-every"),
    ("train-w0 --data {d}/rollouts --out {out} --batch-size 0", "--batch-size"),
    ("train-w0 --data {d}/rollouts --out {out} --threads -1", "--threads"),
    ("train-w0 --data {d}/rollouts --out {d}/file.txt", "--out"),
    ("train-w0 --data {d}/rollouts --out {out} --steps 0", "--steps"),
    ("train-w0 --data {d}/rollouts --out {out} --learning-rate nan", "--learning-rate"),
    ("train-w0 --data {d}/missing --out {out}", "--data"),
    ("train-w0 --data {d}/rollouts --out {out} --init-from {d}/missing", "--init-from"),
    ("train-w0 --data {d}/rollouts --out {out} --dynamics-batch-size 0", "--dynamics-batch-size"),
    ("train-w0 --data {d}/rollouts --out {out} --self-rollout-prob 0.5", "--self-rollout-prob"),  # gone with W0 v1
    ("collect --num 1 --out {out} --seed -5", "--seed"),
    ("collect --num 1 --out {out} --task ,", "--task"),
    ("collect --num 1 --out {d}/demos", "--out"),
    ("collect --num 1 --out {out} --sources nosuch", "--sources"),
    ("collect --num 1 --out {out} --sources residual=-1", "--sources"),
    ("collect --num 1 --out {out} --sources residual=abc", "--sources"),
    ("collect --num 1 --out {out} --sources scripted=0,residual=0", "--sources"),
    ("eval-w0 --checkpoint random:tiny --estimator random --episodes 0", "--episodes"),
    ("eval-w0 --checkpoint {d}/missing --estimator random --episodes 1", "--checkpoint"),
    ("eval-w0 --checkpoint random:tiny --estimator {d}/missing --episodes 1", "--estimator"),
    ("eval-w0 --checkpoint random:tiny --device potato", "--device"),
    ("eval-w0 --checkpoint random:tiny --estimator random --candidates 1", "--candidates"),
    ("eval-w0 --checkpoint random:tiny --estimator random --demos 0", "--demos"),
    ("eval-w0 --checkpoint random:tiny --estimator random --near-misses -1", "--near-misses"),
    ("eval-w0 --checkpoint random:tiny --estimator random --num-envs 0", "--num-envs"),
    ("eval-w0 --checkpoint random:tiny --estimator random --reward-model nosuch", "--reward-model"),
    ("train-calibrator --out {out}.safetensors --pools 5", "--pools"),
    ("train-calibrator --out {out}.safetensors --pools 5:0", "--pools"),
    ("train-calibrator --out {out}.safetensors --candidates 1", "--candidates"),
    ("train-calibrator --out {d}/demos", "--out"),
    ("train-calibrator --out " + UNWRITABLE + "/calibrator.safetensors", "--out"),
    ("train-calibrator --out {out}.safetensors --world-model {d}/missing", "--world-model"),
    ("bench-w0 --batch-sizes 0", "--batch-sizes"),
    ("bench-w0 --model {d}/missing", "--model"),
    ("train-estimator --data {d}/rollouts --out {out} --val-fraction 1", "--val-fraction"),
    ("train-estimator --data {d}/rollouts --out {d}/file.txt", "--out"),
    ("bench --num-envs 0", "--num-envs"),
    ("bench --world-model {d}/missing --no-sim", "--world-model"),
    ("bench --world-model random:tiny --estimator random --reward-model nosuch --no-sim", "--reward-model"),
]


@pytest.mark.parametrize("command, flag", BAD_INPUTS, ids=[case for case, _ in BAD_INPUTS])
def test_bad_input_is_one_line_naming_the_flag_and_exit_2(datasets, tmp_path, capsys, command, flag):
    argv = [word.format(d=datasets, out=tmp_path / "new") for word in command.split()]
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    assert flag in lines[0] and "Traceback" not in captured.err and captured.out == ""
    assert not (tmp_path / "new").exists() and not (tmp_path / "new.mp4").exists()  # no work was done


def test_a_device_this_machine_lacks_is_refused(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["eval-w0", "--device", "cuda", "--episodes", "1"]) == 2
    error = capsys.readouterr().err
    assert "argument --device" in error and "no CUDA device" in error and len(error.strip().splitlines()) == 1


def test_help_and_version_exit_0(capsys):
    assert main(["--version"]) == 0
    assert main(["collect", "--help"]) == 0
    assert "--commit-every" in capsys.readouterr().out
