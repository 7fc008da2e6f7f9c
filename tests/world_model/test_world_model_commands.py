import json

from psi_gym.cli import main
from psi_gym.data.lerobot import write_dataset
from psi_gym.world_model.model import WorldModel
from psi_gym.world_model.synthetic import make_synthetic_episodes


def test_train_w0_and_bench_w0_commands(tmp_path, capsys):
    write_dataset(tmp_path / "rollouts", make_synthetic_episodes(3, seed=0, num_steps=4, image_size=64))
    code = main(["train-w0", "--data", str(tmp_path / "rollouts"), "--out", str(tmp_path / "w0"), "--steps", "2",
                 "--batch-size", "1", "--no-progress", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 2 and summary["num_episodes"] == 3
    assert isinstance(WorldModel.from_pretrained(tmp_path / "w0" / "final"), WorldModel)

    code = main(["bench-w0", "--model", str(tmp_path / "w0" / "final"), "--batch-sizes", "1", "--repeats", "1", "--json"])
    assert code == 0
    bench = json.loads(capsys.readouterr().out)
    assert bench["batch_1"]["ms_per_step"] > 0


def test_train_w0_missing_data_is_one_clear_error(tmp_path, capsys):
    code = main(["train-w0", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "w0"), "--steps", "1"])
    assert code == 2
    assert "train-w0: error" in capsys.readouterr().err


def test_eval_w0_is_handed_the_estimator_by_the_cli(tmp_path, capsys):
    from psi_gym.world_model.config import debug_config
    from tests.envs.helpers import save_tiny_estimator

    WorldModel.from_model_config(debug_config()).save_pretrained(tmp_path / "w0")
    estimator = save_tiny_estimator(tmp_path / "estimator")
    code = main(["eval-w0", "--checkpoint", str(tmp_path / "w0"), "--estimator", str(estimator), "--episodes", "2",
                 "--pairs", "1", "--horizon", "2", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["checkpoint"] == str(tmp_path / "w0") and report["pairs"] == 1 and len(report["psnr_per_step"]) == 2
    assert "video_dir" not in report  # no --video
