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
    with pytest.raises(SystemExit):
        main(["demos", "--task", "juggle", "--out", "x"])
    assert "unknown task" in capsys.readouterr().err
