"""Video datasets: --video on the dataset-writing commands, and 4:4:4 chroma at the sizes robot
learning uses (4:2:0 at 64 px moves colour edges by tens of grey levels)."""

from __future__ import annotations

import json

import numpy as np

from psi_gym.cli import main
from psi_gym.data.lerobot import EpisodeDataset
from psi_gym.data.video import dataset_pixel_format, read_video, write_video


def test_small_frames_keep_their_colour_edges(tmp_path):
    from psi_gym.retarget.robot_rollouts import make_rollout

    frames = make_rollout(0, 0, None, 64).frames  # a coloured object on the table, the robot hand
    errors = {}
    for pixel_format in ("yuv420p", "yuv444p"):
        back = read_video(write_video(tmp_path / f"{pixel_format}.mp4", frames, fps=10, pixel_format=pixel_format))
        errors[pixel_format] = int(np.abs(back.astype(np.int16) - frames).max())
    assert dataset_pixel_format(64, 64) == "yuv444p" and dataset_pixel_format(512, 512) == "yuv420p"
    assert errors["yuv444p"] <= 40 < 80 <= errors["yuv420p"], errors  # measured: 20 vs 121 grey levels


def test_demos_with_video_write_an_mp4_dataset(tmp_path, capsys):
    out = tmp_path / "demos"
    assert main(["demos", "--num", "2", "--seed", "1", "--image-size", "32", "--video", "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["episodes"] == 2
    dataset = EpisodeDataset(out)
    assert dataset.video and dataset.info["features"]["observation.images.cam"]["info"]["video.pix_fmt"] == "yuv444p"
    assert (out / "videos/observation.images.cam/chunk-000/file-000.mp4").is_file()
    assert dataset[1].frames.shape == (dataset[1].num_steps + 1, 32, 32, 3)
    # the same command with PNG frames is another job: no silent mix in one dataset
    assert main(["demos", "--num", "2", "--seed", "1", "--image-size", "32", "--out", str(out)]) == 2
    assert "argument --out" in capsys.readouterr().err
