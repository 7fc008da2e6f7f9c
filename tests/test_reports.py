"""What a person looks at: eval-w0, bench and bench-w0 write a PNG plot beside their JSON summary
(``--out``), and both trainers draw their loss curves (the CSV tracker's loss.png)."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from psi_gym.cli import main


def _png(path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def test_eval_w0_writes_json_and_plot(tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["eval-w0", "--checkpoint", "random:debug", "--estimator", "random", "--episodes", "1", "--horizon", "1",
                 "--demos", "1", "--candidates", "2", "--near-misses", "0", "--num-envs", "2", "--threads", "1",
                 "--no-progress", "--out", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    written = json.loads((out / "eval-w0.json").read_text())
    assert written["psnr_by_step"] == printed["psnr_by_step"] and written["ranking"] == printed["ranking"]
    assert _png(out / "eval-w0.png") == (1680, 400)  # three panels: PSNR, object error, Spearman per demo


def test_bench_and_bench_w0_write_json_and_plot(tmp_path, capsys):
    assert main(["bench", "--world-model", "random:tiny", "--estimator", "random", "--no-sim", "--num-envs", "1,2",
                 "--steps", "1", "--warmup", "0", "--out", str(tmp_path / "bench"), "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)["results"]) == {"1", "2"}
    assert _png(tmp_path / "bench" / "bench.png") == (1120, 400)
    assert json.loads((tmp_path / "bench" / "bench.json").read_text())["steps"] == 1
    assert main(["bench-w0", "--batch-sizes", "1", "2", "--repeats", "1", "--out", str(tmp_path / "bw"), "--json"]) == 0
    capsys.readouterr()
    assert _png(tmp_path / "bw" / "bench-w0.png") == (1120, 400)


@pytest.mark.slow
def test_trainers_log_loss_curves(tmp_path, capsys):
    from psi_gym.data.lerobot import write_dataset
    from psi_gym.data.metrics import read_metrics
    from psi_gym.retarget.robot_rollouts import make_rollout

    write_dataset(tmp_path / "rollouts", [make_rollout(0, index) for index in range(3)])
    assert main(["train-w0", "--data", str(tmp_path / "rollouts"), "--out", str(tmp_path / "w0"), "--steps", "10",
                 "--batch-size", "1", "--no-progress", "--log-with", "csv", "--json"]) == 0
    logs = tmp_path / "w0" / "logs" / "train-w0"
    assert {name for _, name, _ in read_metrics(logs / "metrics.csv")} >= {"loss", "learning_rate"}
    assert _png(logs / "loss.png")[0] > 0
    assert main(["collect", "--num", "3", "--seed", "1", "--out", str(tmp_path / "real")]) == 0
    assert main(["train-estimator", "--data", str(tmp_path / "real"), "--out", str(tmp_path / "est"),
                 "--steps", "10", "--batch-size", "4", "--log-with", "csv", "--json"]) == 0
    logs = tmp_path / "est.logs" / "train-estimator"
    assert {name for _, name, _ in read_metrics(logs / "metrics.csv")} >= {"loss", "position_loss", "learning_rate"}
    assert _png(logs / "loss.png")[0] > 0
    assert main(["train-w0", "--data", str(tmp_path / "rollouts"), "--out", str(tmp_path / "w1"), "--steps", "1",
                 "--batch-size", "1", "--no-progress", "--log-with", "none"]) == 0
    assert not (tmp_path / "w1" / "logs" / "train-w0").exists()
