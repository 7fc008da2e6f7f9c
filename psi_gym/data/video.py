"""Frame arrays to mp4 and back, plus side-by-side comparison videos.

Frames are ``(T, H, W, 3) uint8`` RGB arrays everywhere in psi_gym. Videos are H.264 mp4
files written through imageio-ffmpeg's bundled ffmpeg (the codec LeRobot datasets use too).
H.264 is lossy: `read_video` gives back frames *close* to what was written, not equal.
Use PNG (the dataset default) where frames must survive bit for bit.
"""

from __future__ import annotations

import os
from pathlib import Path

import imageio_ffmpeg
import numpy as np

# ffmpeg's -crf is derived from imageio-ffmpeg's quality in [1, 10]: crf = int((1 - q/10) * 51).
# 9 gives crf 5: nearly transparent for small frames, still far smaller than raw RGB.
DEFAULT_QUALITY = 9.0


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float = 10, quality: float = DEFAULT_QUALITY) -> Path:
    """Write ``(T, H, W, 3) uint8`` frames to an mp4 at ``path`` atomically; return the path.

    The video is encoded into ``<path>.tmp`` and renamed into place only once ffmpeg has
    finished, so a crash never leaves a truncated video under the final name. Any frame
    size works (``macro_block_size=1``: no silent resize); even sizes use ``yuv420p``, the
    pixel format every player reads, odd sizes ``yuv444p`` because 4:2:0 needs even sides.
    """
    path = Path(path)
    frames = _check_frames(frames, "frames")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    num_frames, height, width, _ = frames.shape
    pixel_format = "yuv420p" if height % 2 == 0 and width % 2 == 0 else "yuv444p"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = path.with_name(path.name + ".tmp")
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
        os.replace(tmp_path, path)
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
