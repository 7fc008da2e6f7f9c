import json

import torch

from psi_gym.cli import main
from psi_gym.data.lerobot import write_dataset
from psi_gym.world_model.model import WorldModel

from .conftest import make_episodes, trim


def test_train_w0_and_bench_w0_commands(tmp_path, capsys):
    write_dataset(tmp_path / "rollouts", [trim(ep, 6) for ep in make_episodes(3, image_size=64)])
    code = main(["train-w0", "--data", str(tmp_path / "rollouts"), "--out", str(tmp_path / "w0"), "--steps", "2",
                 "--batch-size", "1", "--dynamics-batch-size", "2", "--no-progress", "--log-with", "none", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 2 and summary["num_episodes"] == 3 and summary["num_frames"] == 3 * 7
    assert {"frame_mse", "object_cm", "final_object_cm", "perception_cm"} <= set(summary)
    model = WorldModel.from_pretrained(tmp_path / "w0" / "final")
    assert isinstance(model, WorldModel) and model.image_size == 64

    code = main(["bench-w0", "--model", str(tmp_path / "w0" / "final"), "--batch-sizes", "1", "--repeats", "1", "--json"])
    assert code == 0
    bench = json.loads(capsys.readouterr().out)
    assert bench["batch_1"]["ms_per_step"] > 0


def test_train_w0_missing_data_is_one_clear_error(tmp_path, capsys):
    code = main(["train-w0", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "w0"), "--steps", "1"])
    assert code == 2
    assert "train-w0: error" in capsys.readouterr().err


def _one_step_train_args(tmp_path) -> list[str]:
    """``train-w0`` on two tiny episodes for one step (add ``--out``)."""
    data = tmp_path / "rollouts"
    write_dataset(data, [trim(ep, 6) for ep in make_episodes(2, image_size=64)])
    return ["train-w0", "--data", str(data), "--steps", "1", "--batch-size", "1", "--dynamics-batch-size", "2",
            "--no-progress", "--log-with", "none", "--json"]


def test_train_w0_parts_and_unroll_schedule_flags(tmp_path, capsys):
    base = _one_step_train_args(tmp_path)
    assert main(base + ["--out", str(tmp_path / "w0")]) == 0
    capsys.readouterr()
    code = main(base + ["--out", str(tmp_path / "dyn"), "--init-from", str(tmp_path / "w0" / "final"),
                        "--parts", "dynamics", "--unroll-schedule", "0:0"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["frame_mse"] is None and summary["final_object_cm"] is not None
    code = main(base + ["--out", str(tmp_path / "sym"), "--init-from", str(tmp_path / "w0" / "final"),
                        "--parts", "dynamics", "--symmetry-shift", "0.03", "--symmetry-turn", "0.2"])
    assert code == 0
    capsys.readouterr()
    saved = json.loads(next((tmp_path / "sym").glob("checkpoint-*/trainer_state.json")).read_text())["config"]
    assert (saved["symmetry_shift"], saved["symmetry_turn"]) == (0.03, 0.2)
    code = main(base + ["--out", str(tmp_path / "rates"), "--learning-rate", "2e-4", "--min-learning-rate", "2e-5",
                        "--warmup-steps", "0"])
    assert code == 0
    capsys.readouterr()
    saved = json.loads(next((tmp_path / "rates").glob("checkpoint-*/trainer_state.json")).read_text())["config"]
    assert (saved["learning_rate"], saved["min_learning_rate"], saved["warmup_steps"]) == (2e-4, 2e-5, 0)
    for flag, value in (("--parts", "physics"), ("--parts", "dynamics,dynamics"), ("--unroll-schedule", "0.5:8"),
                        ("--unroll-schedule", "0:8,x"), ("--unroll-schedule", "0:8,0.5:-1"), ("--symmetry-shift", "-0.01"),
                        ("--symmetry-turn", "nan"), ("--min-learning-rate", "-1e-5"), ("--warmup-steps", "-1"),
                        ("--warmup-steps", "2.5")):
        assert main(base + ["--out", str(tmp_path / "bad"), flag, value]) == 2
        err = capsys.readouterr().err
        assert flag in err and "expected" in err, err
        assert not (tmp_path / "bad").exists()


def test_train_w0_sizes_a_fresh_dynamics_and_refuses_to_resize_an_init_from(tmp_path, capsys):
    base = _one_step_train_args(tmp_path)
    assert main(base + ["--out", str(tmp_path / "wide"), "--dynamics-width", "96", "--dynamics-layers", "2"]) == 0
    capsys.readouterr()
    model = WorldModel.from_pretrained(tmp_path / "wide" / "final")
    assert (model.config.dynamics_hidden_dim, model.config.dynamics_num_layers) == (96, 2)
    assert model.dynamics.trunk[0].out_features == 96 and len(model.dynamics.trunk) == 2 * 3  # Linear, LayerNorm, SiLU
    assert main(base + ["--out", str(tmp_path / "contact"), "--dynamics-contact-width", "8"]) == 0
    capsys.readouterr()
    model = WorldModel.from_pretrained(tmp_path / "contact" / "final")
    assert model.config.dynamics_contact_width == 8 and model.dynamics.contact.hidden.out_features == 8
    assert model.dynamics.trunk[0].in_features == model.dynamics.flat_dim + 2 * 8
    assert main(base + ["--out", str(tmp_path / "servo"), "--dynamics-joint-prior"]) == 0
    capsys.readouterr()
    model = WorldModel.from_pretrained(tmp_path / "servo" / "final")
    assert model.config.dynamics_joint_prior and model.dynamics.joint_response is not None
    assert main(base + ["--out", str(tmp_path / "bad"), "--init-from", str(tmp_path / "wide" / "final"),
                        "--dynamics-joint-prior"]) == 2
    err = capsys.readouterr().err
    assert "--dynamics-joint-prior" in err and "--fresh-dynamics" in err, err
    for flag in ("--dynamics-width", "--dynamics-layers", "--dynamics-contact-width"):
        assert main(base + ["--out", str(tmp_path / "bad"), "--init-from", str(tmp_path / "wide" / "final"), flag, "64"]) == 2
        err = capsys.readouterr().err
        assert flag in err and "--init-from" in err, err
        assert main(base + ["--out", str(tmp_path / "bad"), flag, "0"]) == 2
        assert flag in capsys.readouterr().err
        assert not (tmp_path / "bad").exists()


def test_train_w0_compile_is_refused_up_front_where_it_cannot_work(tmp_path, capsys, no_cpp_compiler):
    """--compile without a C++ compiler, or with --parts that leave the dynamics out: one clear error
    before any data is read, nothing written."""
    base = _one_step_train_args(tmp_path)
    assert main(base + ["--out", str(tmp_path / "bad"), "--compile", "--parts", "renderer"]) == 2
    err = capsys.readouterr().err
    assert "--compile" in err and "dynamics" in err, err
    assert main(base + ["--out", str(tmp_path / "bad"), "--compile"]) == 2
    err = capsys.readouterr().err
    assert "--compile" in err and "C++ compiler" in err and "drop --compile" in err, err
    assert not (tmp_path / "bad").exists()


def test_train_w0_fresh_dynamics_keeps_perception_and_renderer(tmp_path, capsys):
    base = _one_step_train_args(tmp_path)
    assert main(base + ["--out", str(tmp_path / "w0")]) == 0
    source = WorldModel.from_pretrained(tmp_path / "w0" / "final")
    assert main(base + ["--out", str(tmp_path / "fresh"), "--init-from", str(tmp_path / "w0" / "final"),
                        "--fresh-dynamics", "--dynamics-width", "48", "--dynamics-layers", "2", "--parts", "dynamics"]) == 0
    capsys.readouterr()
    fresh = WorldModel.from_pretrained(tmp_path / "fresh" / "final")
    assert (fresh.config.dynamics_hidden_dim, fresh.config.dynamics_num_layers) == (48, 2)
    kept, new = source.state_dict(), fresh.state_dict()
    others = [key for key in kept if not key.startswith("dynamics.")]
    assert others and all(torch.equal(kept[key], new[key]) for key in others)  # perception and renderer as they were
    assert fresh.dynamics.trunk[0].out_features == 48
    # without --init-from there is nothing to keep: one clear error, nothing written
    assert main(base + ["--out", str(tmp_path / "bad"), "--fresh-dynamics"]) == 2
    err = capsys.readouterr().err
    assert "--fresh-dynamics" in err and "--init-from" in err, err
    assert not (tmp_path / "bad").exists()
