"""The flywheel buffer: round trips across processes, kill -9 mid-write, trajectory slices, LeRobot export."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from psi_gym.data.atomic import TargetLockedError
from psi_gym.data.episode import Episode
from psi_gym.data.lerobot import EpisodeDataset
from psi_gym.flywheel.buffer import BufferError, FlywheelBuffer, Provenance

REPO = Path(__file__).resolve().parents[2]

# A module both this process and the child processes import, so that both make the same episodes.
HELPER = textwrap.dedent('''
    import numpy as np
    from psi_gym.data.episode import Episode

    def make_episode(i, steps=None, size=8, human=False):
        steps = steps or 3 + i % 4
        rng = np.random.default_rng(i)
        reference = rng.normal(size=(steps - 1, 22)).astype(np.float32)
        return Episode(
            task="lift_apple", instruction="lift the apple", embodiment="human" if human else "robot",
            frames=rng.integers(0, 256, (steps + 1, size, size, 3), dtype=np.uint8),
            state=rng.normal(size=(steps + 1, 22)).astype(np.float32),
            action=rng.normal(size=(steps, 22)).astype(np.float32),
            object_pose=rng.normal(size=(steps + 1, 7)).astype(np.float32), success=bool(i % 2),
            scene={"task": "lift_apple", "index": i}, seed=i, tier="precision",
            tactile=rng.random((steps + 1, 5)).astype(np.float32) if human else None,
            parent=f"demo-{i}",
            metadata={"reference": reference.tolist(), "human_object_pose": rng.normal(size=(steps - 1, 7)).tolist(),
                      "demo_id": f"demo-{i}", "note": i})
''')


@pytest.fixture
def helper(tmp_path, monkeypatch):
    (tmp_path / "buffer_helper.py").write_text(HELPER)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    import buffer_helper

    return importlib.reload(buffer_helper)


def run_child(tmp_path: Path, code: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def provenance(i: int, source: str = "refined_w0") -> Provenance:
    return Provenance(source, f"demo-{i}", iteration=i // 3, scores={"w0_return": float(i)})


def assert_same(episode: Episode, expected: Episode) -> None:
    for name in ("frames", "state", "action", "object_pose"):
        np.testing.assert_array_equal(getattr(episode, name), getattr(expected, name))
    assert episode.scene == expected.scene and episode.success == expected.success and episode.task == expected.task
    np.testing.assert_array_equal(np.asarray(episode.metadata["reference"], np.float32),
                                  np.asarray(expected.metadata["reference"], np.float32))


def test_round_trip_across_processes(tmp_path, helper):
    root = tmp_path / "buffer"
    child = run_child(tmp_path, f'''
        from buffer_helper import make_episode
        from psi_gym.flywheel.buffer import FlywheelBuffer, Provenance
        with FlywheelBuffer.open({str(root)!r}, capacity=400) as buffer:
            buffer.extend([(make_episode(i), Provenance("refined_w0", f"demo-{{i}}", 1, {{"w0_return": i}}))
                           for i in range(5)])
            buffer.add(make_episode(5, human=True), Provenance("human_demo", "demo-5", 1, {{"demo_quality": 0.7}}))
            buffer.commit()
    ''')
    assert child.wait(timeout=120) == 0, child.stderr.read()
    view = FlywheelBuffer.read(root)
    assert len(view) == 6 and [r.source for r in view.records] == ["refined_w0"] * 5 + ["human_demo"]
    for i in range(5):
        episode = view.episode(i)
        assert_same(episode, helper.make_episode(i))
        assert episode.metadata["flywheel"]["source"] == "refined_w0" and episode.metadata["note"] == i
        assert episode.metadata["flywheel"]["scores"] == {"w0_return": float(i)} and episode.parent == f"demo-{i}"
    human = view.episode(5)
    assert human.embodiment == "human" and human.source == "demo"
    np.testing.assert_array_equal(human.tactile, helper.make_episode(5, human=True).tactile)

    # and back: this process appends, a fresh process reads everything
    with FlywheelBuffer.open(root) as buffer:
        assert buffer.capacity == 400
        buffer.extend([(helper.make_episode(6), provenance(6, "robot_episode"))])
    child = run_child(tmp_path, f'''
        import numpy as np
        from buffer_helper import make_episode
        from psi_gym.flywheel.buffer import FlywheelBuffer
        view = FlywheelBuffer.read({str(root)!r})
        assert len(view) == 7, len(view)
        assert view.records[6].source == "robot_episode"
        np.testing.assert_array_equal(view.episode(6).frames, make_episode(6).frames)
        print("ok")
    ''')
    assert child.wait(timeout=120) == 0, child.stderr.read()
    assert child.stdout.read().strip() == "ok"


def test_kill_9_mid_write_loses_nothing_committed_and_resumes(tmp_path, helper):
    root = tmp_path / "buffer"
    # big frames so that a commit takes a while: the kill lands inside one more often than not
    child = run_child(tmp_path, f'''
        from buffer_helper import make_episode
        from psi_gym.flywheel.buffer import FlywheelBuffer, Provenance
        with FlywheelBuffer.open({str(root)!r}, capacity=20000) as buffer:
            for i in range(1000):
                buffer.add(make_episode(i, steps=12, size=64), Provenance("refined_w0", f"demo-{{i}}", 1))
                buffer.commit()
                print(i, flush=True)
    ''')
    committed = -1
    deadline = time.monotonic() + 120
    while committed < 6 and time.monotonic() < deadline:
        line = child.stdout.readline()
        assert line, child.stderr.read()
        committed = int(line)
    time.sleep(float(np.random.default_rng().uniform(0.0, 0.05)))
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    for line in child.stdout.read().split():  # commits reported before the kill landed
        committed = int(line)

    view = FlywheelBuffer.read(root)
    assert len(view) >= committed + 1  # every reported commit is there (one more may have made it)
    for i in range(len(view)):
        assert_same(view.episode(i), helper.make_episode(i, steps=12, size=64))

    # the lock died with the writer: the next one resumes after the committed trajectories
    with FlywheelBuffer.open(root) as buffer:
        before = len(buffer)
        buffer.extend([(helper.make_episode(5000, steps=12, size=64), provenance(5000))])
    view = FlywheelBuffer.read(root)
    assert len(view) == before + 1
    assert_same(view.episode(before), helper.make_episode(5000, steps=12, size=64))
    for i in range(before):
        assert_same(view.episode(i), helper.make_episode(i, steps=12, size=64))


def test_uncommitted_trajectories_are_dropped_and_one_writer_at_a_time(tmp_path, helper):
    root = tmp_path / "buffer"
    with FlywheelBuffer.open(root, capacity=200) as buffer:
        buffer.extend([(helper.make_episode(i), provenance(i)) for i in range(3)])
        buffer.add(helper.make_episode(3), provenance(3))  # never committed
        assert len(FlywheelBuffer.read(root)) == 3
        child = run_child(tmp_path, f'''
            from psi_gym.flywheel.buffer import FlywheelBuffer
            FlywheelBuffer.open({str(root)!r})
        ''')
        assert child.wait(timeout=120) != 0 and "TargetLockedError" in child.stderr.read()
        with pytest.raises(TargetLockedError):  # another thread of this process neither
            import threading

            errors = []
            thread = threading.Thread(target=lambda: errors.append(_try_open(root)))
            thread.start()
            thread.join()
            raise errors[0]
    assert len(FlywheelBuffer.read(root)) == 3
    with pytest.raises(BufferError, match="read-only"):
        FlywheelBuffer.read(root).add(helper.make_episode(9), provenance(9))


def _try_open(root: Path) -> BaseException:
    try:
        FlywheelBuffer.open(root)
    except BaseException as error:  # noqa: BLE001 - handed to the test thread
        return error
    return AssertionError("a second writer got in")


def test_full_buffer_refuses_instead_of_overwriting(tmp_path, helper):
    root = tmp_path / "buffer"
    with FlywheelBuffer.open(root, capacity=12) as buffer:
        buffer.extend([(helper.make_episode(i, steps=4), provenance(i)) for i in range(2)])
        with pytest.raises(BufferError, match="full"):
            buffer.add(helper.make_episode(2, steps=4), provenance(2))
    assert len(FlywheelBuffer.read(root)) == 2


def test_truncate_and_select(tmp_path, helper):
    root = tmp_path / "buffer"
    with FlywheelBuffer.open(root, capacity=300) as buffer:
        buffer.extend([(helper.make_episode(i), provenance(i, "robot_episode" if i % 2 else "refined_w0"))
                       for i in range(6)])
        assert [r.trajectory_id for r in buffer.select(sources=["robot_episode"])] == [1, 3, 5]
        assert [r.trajectory_id for r in buffer.select(iterations=[1])] == [3, 4, 5]
        buffer.truncate(2)
        buffer.extend([(helper.make_episode(10), provenance(10))])
    view = FlywheelBuffer.read(root)
    assert len(view) == 3 and view.records[2].trajectory_id == 2
    assert_same(view.episode(2), helper.make_episode(10))
    assert_same(view.episode(1), helper.make_episode(1))


def test_trajectory_slices_stay_inside_one_trajectory(tmp_path, helper):
    root = tmp_path / "buffer"
    with FlywheelBuffer.open(root, capacity=300) as buffer:
        buffer.extend([(helper.make_episode(i, steps=6), provenance(i)) for i in range(5)])
    view = FlywheelBuffer.read(root)
    batch = view.sample(batch_size=16, slice_len=4, generator=torch.Generator().manual_seed(0))
    assert batch.batch_size == torch.Size([16])
    ids = batch["trajectory"].reshape(4, 4)
    steps = batch["step"].reshape(4, 4)
    assert (ids == ids[:, :1]).all()  # each slice is one trajectory's consecutive rows
    assert ((steps[:, 1:] - steps[:, :-1]) == 1).all()
    for trajectory, step, pixels in zip(batch["trajectory"], batch["step"], batch["pixels"]):
        np.testing.assert_array_equal(pixels.numpy(), helper.make_episode(int(trajectory), steps=6).frames[int(step)])
    again = view.sample(batch_size=16, slice_len=4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again["trajectory"], batch["trajectory"]) and torch.equal(again["step"], batch["step"])


def test_lerobot_export_loads_back(tmp_path, helper):
    root = tmp_path / "buffer"
    with FlywheelBuffer.open(root, capacity=300) as buffer:
        buffer.extend([(helper.make_episode(i), provenance(i)) for i in range(4)]
                      + [(helper.make_episode(9, human=True), Provenance("human_demo", "demo-9", 1))])
    view = FlywheelBuffer.read(root)
    out = view.export_lerobot(tmp_path / "kept")  # robot trajectories by default
    dataset = EpisodeDataset(out)
    assert len(dataset) == 4 and dataset.info["codebase_version"] == "v3.0"
    for i in range(4):
        episode = dataset[i]
        assert_same(episode, helper.make_episode(i))
        assert episode.metadata["flywheel"]["source"] == "refined_w0" and episode.source == "generated"
    with pytest.raises(BufferError, match="one embodiment"):
        view.export_lerobot(tmp_path / "mixed", view.records)
    human = view.export_lerobot(tmp_path / "human", view.select(sources=["human_demo"]))
    assert EpisodeDataset(human)[0].embodiment == "human"


def test_bad_buffers_fail_clearly(tmp_path, helper):
    with pytest.raises(FileNotFoundError):
        FlywheelBuffer.read(tmp_path / "none")
    root = tmp_path / "buffer"
    with FlywheelBuffer.open(root, capacity=100) as buffer:
        buffer.extend([(helper.make_episode(0), provenance(0))])
        with pytest.raises(BufferError, match="frames of"):
            buffer.add(helper.make_episode(1, size=16), provenance(1))
    (root / "buffer.json").write_text("{not json")
    with pytest.raises(BufferError, match="does not load"):
        FlywheelBuffer.read(root)
    with pytest.raises(ValueError, match="source"):
        Provenance("imagined", "d", 0)
