"""Frame arrays to mp4 and back, plus side-by-side comparison videos.

Frames are ``(T, H, W, 3) uint8`` RGB arrays everywhere in psi_gym. Videos are H.264 mp4
files written through imageio-ffmpeg's bundled ffmpeg (the codec LeRobot datasets use too).
H.264 is lossy: `read_video` gives back frames *close* to what was written, not equal.
Use PNG (the dataset default) where frames must survive bit for bit.

Chroma. ``yuv420p`` keeps one colour sample per 2x2 pixels. At the sizes robot learning uses
(64 px) that smears every colour edge over two pixels: a red object's border on the grey table
came back up to 170 grey levels off in one channel. Datasets therefore store small frames as
``yuv444p`` (full-resolution colour, `dataset_pixel_format`); comparison videos meant for people
keep ``yuv420p`` where the sides are even, the format every player reads.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import imageio_ffmpeg
import numpy as np

from psi_gym.data.atomic import TMP_MARK, fsync_dir, fsync_file

# ffmpeg's -crf is derived from imageio-ffmpeg's quality in [1, 10]: crf = int((1 - q/10) * 51).
# 9 gives crf 5: nearly transparent for small frames, still far smaller than raw RGB.
DEFAULT_QUALITY = 9.0
PIXEL_FORMATS = ("yuv420p", "yuv444p")
FULL_CHROMA_BELOW = 256  # px: datasets keep full-resolution colour for frames smaller than this


def dataset_pixel_format(height: int, width: int) -> str:
    """The pixel format datasets store frames of this size in: ``yuv444p`` below
    `FULL_CHROMA_BELOW` px or for odd sides (4:2:0 needs even ones), else ``yuv420p``."""
    if min(height, width) < FULL_CHROMA_BELOW or height % 2 or width % 2:
        return "yuv444p"
    return "yuv420p"


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float = 10, quality: float = DEFAULT_QUALITY,
                pixel_format: str | None = None) -> Path:
    """Write ``(T, H, W, 3) uint8`` frames to an mp4 at ``path`` atomically; return the path.

    The video is encoded into ``<path>.tmp-<token>``, fsynced and renamed into place only once
    ffmpeg has finished, so a crash never leaves a truncated video under the final name. Any
    frame size works (``macro_block_size=1``: no silent resize). ``pixel_format`` (one of
    `PIXEL_FORMATS`) defaults to ``yuv420p``, the format every player reads, where the sides are
    even, else ``yuv444p`` (4:2:0 needs even sides); datasets pass `dataset_pixel_format`.
    """
    path = Path(path)
    frames = _check_frames(frames, "frames")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    num_frames, height, width, _ = frames.shape
    if pixel_format is None:
        pixel_format = "yuv420p" if height % 2 == 0 and width % 2 == 0 else "yuv444p"
    if pixel_format not in PIXEL_FORMATS or (pixel_format == "yuv420p" and (height % 2 or width % 2)):
        raise ValueError(f"pixel_format must be one of {PIXEL_FORMATS} (yuv420p only for even sides), got "
                         f"{pixel_format!r} for {height}x{width} frames")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = path.with_name(f"{path.name}{TMP_MARK}{secrets.token_hex(4)}")
    writer = imageio_ffmpeg.write_frames(
        str(tmp_path),
        (width, height),
        fps=fps,
        codec="libx264",
        pix_fmt_out=pixel_format,
        quality=quality,
        macro_block_size=1,
        output_params=["-f", "mp4"],  # the .tmp suffix hides the container from ffmpeg
        ffmpeg_log_level="error",
    )
    try:
        writer.send(None)  # start the generator (launches ffmpeg)
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
        writer.close()
        fsync_file(tmp_path)
        os.replace(tmp_path, path)
        fsync_dir(path.parent)
    except BaseException:
        writer.close()
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def read_video(path: str | os.PathLike) -> np.ndarray:
    """Decode every frame of a video file into a ``(T, H, W, 3) uint8`` array."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no video file at {path}")
    try:
        # passthrough: one output frame per stored frame, no duplication to a constant rate
        reader = imageio_ffmpeg.read_frames(str(path), output_params=["-fps_mode", "passthrough"])
        meta = next(reader)
        width, height = meta["size"]
        frames = [np.frombuffer(frame, dtype=np.uint8).reshape(height, width, 3) for frame in reader]
    except (OSError, RuntimeError, StopIteration) as error:
        raise OSError(f"could not decode video {path}: {error}") from None
    if not frames:
        return np.zeros((0, height, width, 3), dtype=np.uint8)
    return np.stack(frames)


def side_by_side(*videos: np.ndarray) -> np.ndarray:
    """Concatenate frame arrays horizontally, e.g. predicted | true, or human | robot.

    All videos must share the frame height. A video shorter than the longest one is padded
    by repeating its last frame, so a rollout that ended early stays visible, frozen.
    """
    if not videos:
        raise ValueError("side_by_side needs at least one video")
    videos = tuple(_check_frames(video, f"video {i}") for i, video in enumerate(videos))
    heights = {video.shape[1] for video in videos}
    if len(heights) != 1:
        raise ValueError(f"side_by_side needs videos of one frame height, got heights {[v.shape[1] for v in videos]}")
    if any(video.shape[0] == 0 for video in videos):
        raise ValueError(f"side_by_side needs at least one frame per video, got lengths {[len(v) for v in videos]}")
    length = max(video.shape[0] for video in videos)
    padded = [
        np.concatenate([video, np.repeat(video[-1:], length - video.shape[0], axis=0)]) for video in videos
    ]
    return np.concatenate(padded, axis=2)


def _check_frames(frames: np.ndarray, name: str) -> np.ndarray:
    if not isinstance(frames, np.ndarray):
        raise ValueError(f"{name} must be a (T, H, W, 3) uint8 array, got {type(frames).__name__}")
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
        raise ValueError(f"{name} must be a (T, H, W, 3) uint8 array, got {frames.dtype} of shape {frames.shape}")
    return frames
