"""Resumable dataset jobs (`DatasetJobWriter`): completeness, resume, overwrite that keeps the old
dataset until the new one is complete, one writer per target, no silent clobbering; and a crash
injected at every rename of every commit leaves the old or the new dataset, its stats agreeing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from psi_gym.data.atomic import TargetLockedError, hold_lock
from psi_gym.data.lerobot import (
    DatasetError,
    EpisodeDataset,
    IncompleteDatasetError,
    append_episodes,
    partial_path,
    write_dataset,
)
from psi_gym.data.writer import DatasetJob, DatasetJobWriter

from .test_lerobot import assert_same_episode, make_episode

ROOT = Path(__file__).resolve().parents[2]


def episode(index: int, seed: int = 0):
    """Episode ``index`` of a job seeded ``seed``: the same every time it is made."""
    return make_episode(np.random.default_rng([seed, index]), "robot", steps=3, size=16, seed=index)


def job(num: int, seed: int = 0) -> DatasetJob:
    return DatasetJob("collect", {"num": num, "seed": seed, "video": False}, num, count_param="num")


def run_job(root: Path, num: int, seed: int = 0, *, commit_every: int = 2, overwrite: bool = False,
            fail_after: int | None = None) -> DatasetJobWriter:
    """What ``psi-gym collect`` does; ``fail_after`` raises after that many episodes were made."""
    writer = DatasetJobWriter(root, job(num, seed), overwrite=overwrite, commit_every=commit_every)
    with writer:
        def episodes():
            for index in range(writer.committed, num):
                if fail_after is not None and index >= fail_after:
                    raise RuntimeError("killed")
                yield episode(index, seed)
        writer.write(episodes())
    return writer


def test_a_job_writes_a_complete_dataset(tmp_path):
    writer = run_job(tmp_path / "out", 5)
    dataset = EpisodeDataset(tmp_path / "out")
    assert len(dataset) == 5 and dataset.complete and writer.resumed_from == 0
    assert dataset.info["job"] == {"command": "collect", "params": {"num": 5, "seed": 0, "video": False},
                                   "count_param": "num"}
    for index, got in enumerate(dataset):
        assert_same_episode(episode(index), got)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["out"]


def test_an_interrupted_job_never_loads_as_complete_and_resumes(tmp_path):
    root = tmp_path / "out"
    with pytest.raises(RuntimeError, match="killed"):
        run_job(root, 7, commit_every=2, fail_after=5)
    partial = partial_path(root)
    assert not root.exists() and partial.is_dir()  # batches 0-1 and 2-3 committed, episode 4 lost
    with pytest.raises(DatasetError, match=r"out.partial holds an unfinished one \(4 of 7 episodes\).*"
                                           r"psi-gym collect --num 7 --seed 0 --out .*out"):
        EpisodeDataset(root)
    with pytest.raises(IncompleteDatasetError, match=r"unfinished dataset: 4 of 7 planned.*Rerun `psi-gym collect"):
        EpisodeDataset(partial)
    assert len(EpisodeDataset(partial, allow_incomplete=True)) == 4
    with pytest.raises(IncompleteDatasetError):
        append_episodes(partial, [episode(4)])

    writer = run_job(root, 7, commit_every=2)
    assert writer.resumed_from == 4 and writer.committed == 7
    assert not partial.exists()
    for index, got in enumerate(EpisodeDataset(root)):
        assert_same_episode(episode(index), got)  # the very dataset an uninterrupted run writes


def test_resume_with_more_episodes_planned(tmp_path):
    root = tmp_path / "out"
    with pytest.raises(RuntimeError):
        run_job(root, 4, fail_after=2)
    run_job(root, 6)  # --num 6 now: the committed two are still wanted
    dataset = EpisodeDataset(root)
    assert len(dataset) == 6 and dataset.info["planned_episodes"] == 6 and dataset.info["job"]["params"]["num"] == 6


def test_another_jobs_partial_is_refused_or_discarded(tmp_path):
    root = tmp_path / "out"
    with pytest.raises(RuntimeError):
        run_job(root, 6, seed=1, fail_after=2)
    with pytest.raises(FileExistsError, match=r"another job \(it has seed 1 \(now 2\)\).*--overwrite"):
        run_job(root, 6, seed=2)
    run_job(root, 6, seed=2, overwrite=True)
    assert EpisodeDataset(root).info["job"]["params"]["seed"] == 2


def test_overwrite_keeps_the_old_dataset_until_the_new_one_is_complete(tmp_path):
    root = tmp_path / "out"
    run_job(root, 3, seed=1)
    with pytest.raises(FileExistsError, match="already holds a complete dataset of 3 episodes made by this very job"):
        run_job(root, 3, seed=1)
    with pytest.raises(RuntimeError):
        run_job(root, 5, seed=2, overwrite=True, fail_after=3)
    old = EpisodeDataset(root)  # still the old, complete one
    assert len(old) == 3 and old.info["job"]["params"]["seed"] == 1
    run_job(root, 5, seed=2, overwrite=True)  # resumes the new one, then swaps it in
    new = EpisodeDataset(root)
    assert len(new) == 5 and new.info["job"]["params"]["seed"] == 2
    assert not partial_path(root).exists()


def test_out_checks_run_before_any_work(tmp_path):
    made = []

    def start(root: Path, overwrite: bool = False) -> None:
        writer = DatasetJobWriter(root, job(2), overwrite=overwrite)
        with writer:
            made.append(root)

    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="is a file"):
        start(tmp_path / "file")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="no dataset"):
        start(tmp_path / "notes", overwrite=True)
    with pytest.raises(OSError):
        start(Path("/proc/psi-gym-test/out"))
    assert made == [] and (tmp_path / "notes" / "todo.txt").read_text() == "keep me"


def test_one_writer_per_target(tmp_path):
    root = tmp_path / "out"
    errors = []
    with hold_lock(root):  # another writer (here: this thread) holds the target
        thread = threading.Thread(target=lambda: errors.append(_try(lambda: run_job(root, 2))))
        thread.start()
        thread.join()
    assert isinstance(errors[0], TargetLockedError) and "being written by another" in str(errors[0])
    assert not root.exists()
    run_job(root, 2)  # the lock is free again


def _try(function):
    try:
        function()
    except Exception as error:  # noqa: BLE001 - handed back to the test
        return error
    return None


def test_the_final_rename_never_replaces_a_dataset_that_appeared(tmp_path):
    root = tmp_path / "out"
    other = write_dataset(tmp_path / "other", [episode(9, seed=9)])
    writer = DatasetJobWriter(root, job(3))
    with writer:
        def episodes():
            for index in range(3):
                yield episode(index)
            shutil.copytree(other, root)  # a writer that takes no lock finished first
        with pytest.raises(FileExistsError, match="appeared while this writer worked"):
            writer.write(episodes())
    dataset = EpisodeDataset(root)
    assert len(dataset) == 1 and dataset[0].seed == 9  # theirs, untouched
    assert EpisodeDataset(partial_path(root)).complete  # ours, complete, beside it


# ----------------------------------------------------------------------- crash at every rename
CRASH = """
import os, sys
sys.path.insert(0, {root!r})
from pathlib import Path
from psi_gym.data import atomic
atomic._renameat2 = None  # every rename goes through os.rename, counted below
stop_at, seen = int(sys.argv[1]), [0]
real_replace, real_rename = os.replace, os.rename

def counted(real):
    def rename(src, dst, *args, **kwargs):
        seen[0] += 1
        if seen[0] == stop_at:
            os._exit(9)  # killed: nothing after this runs
        return real(src, dst, *args, **kwargs)
    return rename

os.replace, os.rename = counted(real_replace), counted(real_rename)
from tests.data.test_writer import episode, job, run_job
from psi_gym.data.lerobot import append_episodes, write_dataset
root = Path({target!r})
{operation}
"""

OPERATIONS = {
    # (set-up, what the killed process does, episodes before, episodes after)
    "append": ("write_dataset(root, [episode(0), episode(1)])",
               "append_episodes(root, [episode(2), episode(3)])", 2, 4),
    "overwrite": ("write_dataset(root, [episode(0), episode(1)])",
                  "write_dataset(root, [episode(i, seed=5) for i in range(3)], overwrite=True)", 2, 3),
    "job": ("", "run_job(root, 3, commit_every=2)", 0, 3),
}


@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_a_crash_at_every_rename_leaves_old_or_new_with_agreeing_stats(tmp_path, operation):
    setup, work, before, after = OPERATIONS[operation]
    outcomes = []
    for stop_at in range(1, 60):
        root = tmp_path / f"run{stop_at}" / "out"
        root.parent.mkdir()
        exec(setup, {"write_dataset": write_dataset, "episode": episode, "root": root})
        code = textwrap.dedent(CRASH).format(root=str(ROOT), target=str(root), operation=work)
        result = subprocess.run([sys.executable, "-c", code, str(stop_at)], cwd=ROOT, capture_output=True, text=True)
        assert result.returncode in (0, 9), result.stderr
        try:
            dataset = EpisodeDataset(root)
        except DatasetError:
            dataset = None
        if dataset is None:
            assert before == 0, f"killed at rename {stop_at}: the old dataset is gone"
            outcomes.append(0)
        else:
            assert len(dataset) in (before, after), f"killed at rename {stop_at}: {len(dataset)} episodes"
            assert dataset.complete
            # info.json commits the stats with the episodes; stats.json (LeRobot's copy) agrees once loaded
            assert dataset.stats["observation.state"]["count"][0] == dataset.info["total_frames"]
            assert json.loads((root / "meta/stats.json").read_text()) == dataset.info["stats"]
            outcomes.append(len(dataset))
        if result.returncode == 0:
            break
        # what a rerun does: the job resumes; an append or overwrite is simply done again
        again = work if operation == "job" or len(outcomes) and outcomes[-1] != after else ""
        if again:
            exec(again, {"append_episodes": append_episodes, "write_dataset": write_dataset, "episode": episode,
                         "run_job": run_job, "root": root})
            assert len(EpisodeDataset(root)) >= after
    assert result.returncode == 0 and outcomes[-1] == after
    assert before in outcomes[:-1] or before == 0  # some kills did land before the commit
    assert len(outcomes) >= 4, outcomes  # every rename of the operation was tried


# ----------------------------------------------------------------------- two real processes
def _cli(*argv: str) -> subprocess.Popen:
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    return subprocess.Popen([sys.executable, "-m", "psi_gym.cli", *argv], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_lock(path: Path, process: subprocess.Popen, timeout: float = 60.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and path.read_text().strip() == str(process.pid):
            return
        if process.poll() is not None:
            raise AssertionError(f"the first writer ended early: {process.communicate()}")
        time.sleep(0.05)
    raise AssertionError("the first writer never took the lock")


def test_two_processes_writing_one_out(tmp_path):
    out = tmp_path / "rollouts"
    # started together: both load psi_gym, then race for the lock; the winner works for seconds more
    processes = {seed: _cli("collect", "--num", "6", "--seed", seed, "--image-size", "32", "--out", str(out), "--json")
                 for seed in ("4", "5")}
    results = {seed: (process.returncode, *process.communicate(timeout=300)) for seed, process in processes.items()}
    results = {seed: (processes[seed].returncode, out_, err) for seed, (_, out_, err) in results.items()}
    winners = [seed for seed, (code, _, _) in results.items() if code == 0]
    losers = [seed for seed, (code, _, _) in results.items() if code == 2]
    assert len(winners) == 1 and len(losers) == 1, {seed: (code, err[-500:]) for seed, (code, _, err) in results.items()}
    lines = [line for line in results[losers[0]][2].splitlines() if line.strip()]
    assert len(lines) == 1 and "argument --out" in lines[0] and "being written by another process" in lines[0], lines
    assert f"pid {processes[winners[0]].pid}" in lines[0]
    dataset = EpisodeDataset(out)
    assert len(dataset) == 6 and dataset.info["job"]["params"]["seed"] == int(winners[0])
    assert json.loads(results[winners[0]][1])["episodes"] == 6


# ----------------------------------------------------------------------- kill -9 of a real collect
def _committed(partial: Path) -> int:
    try:
        return json.loads((partial / "meta/info.json").read_text())["total_episodes"]
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.slow
def test_kill_9_of_a_real_collect_loses_no_committed_episode(tmp_path):
    import signal
    import time

    from psi_gym.retarget.robot_rollouts import make_rollout

    out = tmp_path / "rollouts"
    partial = partial_path(out)
    argv = ["collect", "--num", "8", "--seed", "11", "--image-size", "32", "--commit-every", "2", "--out", str(out)]
    kills = []
    # kill when the lock is taken (nothing committed yet), then once 2, 4 and 6 episodes are committed
    for wait_for in (0, 2, 4, 6):
        process = _cli(*argv)
        _wait_for_lock(tmp_path / ".rollouts.lock", process)
        deadline = time.monotonic() + 120
        while _committed(partial) < wait_for and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.communicate()
        committed = _committed(partial)
        kills.append((wait_for, committed))
        # never a dataset that loads with missing episodes: --out does not exist until it is whole
        if out.exists():
            assert len(EpisodeDataset(out)) == 8
            break
        with pytest.raises(DatasetError, match="unfinished" if partial.exists() else "no dataset there"):
            EpisodeDataset(out)
        if partial.exists():
            with pytest.raises(IncompleteDatasetError):
                EpisodeDataset(partial)
            assert len(EpisodeDataset(partial, allow_incomplete=True)) == committed >= wait_for
    assert [committed for _, committed in kills] == sorted(committed for _, committed in kills)  # nothing lost

    rerun = _cli(*argv, "--json")
    stdout, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr
    summary = json.loads(stdout)
    assert summary["episodes"] == 8 and summary["resumed_from"] == kills[-1][1]
    dataset = EpisodeDataset(out)
    assert len(dataset) == 8 and not partial.exists()
    for index in (0, 7):  # the episodes are those an uninterrupted run makes
        assert_same_episode(make_rollout(11, index, None, 32), dataset[index])
    print("kill -9 points (waited for, committed):", kills)


def test_a_job_matches_on_its_arguments_and_checks():
    stored = DatasetJob("retarget", {"demos": "/d", "video": False}, 3, checks={"demos_fingerprint": "aa"}).to_json()
    assert DatasetJob("retarget", {"demos": "/d", "video": False}, 3, checks={"demos_fingerprint": "aa"}).mismatch(stored) == ""
    assert DatasetJob("retarget", {"demos": "/d", "video": False}, 3,
                      checks={"demos_fingerprint": "bb"}).mismatch(stored) == "it has another demos_fingerprint"
    assert "made by 'retarget'" in job(3).mismatch(stored)
    from psi_gym.data.lerobot import job_command_line

    assert job_command_line(stored, Path("out")) == "psi-gym retarget --demos /d --out out"  # checks are no flags
