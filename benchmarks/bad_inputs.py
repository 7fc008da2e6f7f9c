"""Try every `psi-gym` subcommand with bad arguments, as a new user would, and classify each outcome.

    python benchmarks/bad_inputs.py                       # this checkout
    python benchmarks/bad_inputs.py --repo /tmp/old       # another checkout (git worktree add /tmp/old <commit>)
    python benchmarks/bad_inputs.py --json out.json --only demos,collect
    python benchmarks/bad_inputs.py --table before.json after.json   # the counts side by side

Each case runs ``python -m psi_gym.cli ...`` in a subprocess (cwd = the checkout, memory capped, a
timeout) and is classified:

=========== ================================================================================
clear       exit 2, exactly one line on stderr, no traceback, naming the flag (or the thing) at fault
vague       exit 2 without a traceback, but several lines or the flag is not named
traceback   any other exit code (1: an uncaught exception or ``SystemExit("...")``), or a traceback
silent      exit 0: the bad value was taken
timeout     still running after the timeout (work started on a bad value)
=========== ================================================================================

The fixtures (a tiny human-demo dataset, a tiny robot-rollout dataset, a corrupt one, a file, a
folder that is no dataset) are made with the checkout's own code before the cases run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

FIXTURES = r"""
import sys
from pathlib import Path
from psi_gym.data.lerobot import write_dataset
from psi_gym.retarget.human_demos import make_demo
from psi_gym.retarget.robot_rollouts import make_rollout
tmp = Path(sys.argv[1])
write_dataset(tmp / "demos", [make_demo("lift_apple", 0, i) for i in range(2)])
write_dataset(tmp / "rollouts", [make_rollout(0, i) for i in range(3)])
(tmp / "corrupt" / "meta").mkdir(parents=True)
(tmp / "corrupt" / "meta" / "info.json").write_text("{not json")
(tmp / "file.txt").write_text("a file, not a folder")
(tmp / "notes").mkdir()
(tmp / "notes" / "todo.txt").write_text("keep me")
"""

UNWRITABLE = "/proc/psi-gym-bad-inputs"  # nobody, root included, can create anything in /proc

# (subcommand arguments, words one of which the error line must hold). {t} is the fixture folder,
# {n} a fresh name under it for each case.
CASES: list[tuple[str, tuple[str, ...]]] = [
    # ----------------------------------------------------------------------------- demos
    ("demos --num 1 --out {n} --image-size 0", ("--image-size",)),
    ("demos --num 1 --out {n} --image-size 100000", ("--image-size",)),
    ("demos --num 1 --out {n} --image-size -8", ("--image-size",)),
    ("demos --num 1 --out {n} --image-size 4", ("--image-size",)),
    ("demos --num 1 --out {n} --image-size abc", ("--image-size",)),
    ("demos --num 1 --out {n} --task ,", ("--task",)),
    ("demos --num 1 --out {n} --task juggle", ("--task",)),
    ("demos --num 1 --out {n} --task ''", ("--task",)),
    ("demos --num 1 --out {n} --task lift_apple,juggle", ("--task",)),
    ("demos --num 0 --out {n}", ("--num",)),
    ("demos --num -1 --out {n}", ("--num",)),
    ("demos --num abc --out {n}", ("--num",)),
    ("demos --num 1 --out {n} --seed -5", ("--seed",)),
    ("demos --num 1 --out {n} --seed 99999999999999999999999", ("--seed",)),
    ("demos --num 1 --out {n} --seed abc", ("--seed",)),
    ("demos --num 1 --out {n} --tier expert", ("--tier",)),
    ("demos --num 1 --out {n} --workers 0", ("--workers",)),
    ("demos --num 1 --out {n} --workers -2", ("--workers",)),
    ("demos --num 1 --out {n} --commit-every 0", ("--commit-every",)),
    ("demos --num 1 --out " + UNWRITABLE, ("--out",)),
    ("demos --num 1 --out {t}/file.txt", ("--out",)),
    ("demos --num 1 --out {t}/file.txt/sub", ("--out",)),
    ("demos --num 1 --out {t}/demos", ("--out", "--overwrite")),
    ("demos --num 1 --out {t}/notes --overwrite", ("--out",)),
    ("demos --num 1", ("--out",)),
    ("demos --num 1 --out ''", ("--out",)),
    # ---------------------------------------------------------------------------- retarget
    ("retarget --demos {t}/missing --out {n}", ("--demos",)),
    ("retarget --demos {t}/file.txt --out {n}", ("--demos",)),
    ("retarget --demos {t}/rollouts --out {n}", ("--demos",)),
    ("retarget --demos {t}/corrupt --out {n}", ("--demos", "info.json")),
    ("retarget --demos {t}/demos --out {t}/demos --overwrite", ("--out", "--demos")),
    ("retarget --demos {t}/demos --out {t}/rollouts", ("--out", "--overwrite")),
    ("retarget --demos {t}/demos --out " + UNWRITABLE, ("--out",)),
    ("retarget --demos {t}/demos --out {t}/file.txt", ("--out",)),
    ("retarget --demos {t}/demos --out {n} --workers 0", ("--workers",)),
    ("retarget --out {n}", ("--demos",)),
    # ----------------------------------------------------------------------------- collect
    ("collect --num 1 --out {n} --seed -5", ("--seed",)),
    ("collect --num 1 --out {n} --seed 99999999999999999999999", ("--seed",)),
    ("collect --num 1 --out {n} --task ,", ("--task",)),
    ("collect --num 1 --out {n} --task juggle", ("--task",)),
    ("collect --num 0 --out {n}", ("--num",)),
    ("collect --num -3 --out {n}", ("--num",)),
    ("collect --num 1 --out {n} --image-size 0", ("--image-size",)),
    ("collect --num 1 --out {n} --image-size 100000", ("--image-size",)),
    ("collect --num 1 --out {n} --image-size -8", ("--image-size",)),
    ("collect --num 1 --out {n} --workers 0", ("--workers",)),
    ("collect --num 1 --out {n} --commit-every -1", ("--commit-every",)),
    ("collect --num 1 --out {t}/file.txt", ("--out",)),
    ("collect --num 1 --out " + UNWRITABLE, ("--out",)),
    ("collect --num 1 --out {t}/demos", ("--out", "--overwrite")),
    ("collect --num 1 --out {t}/notes --overwrite", ("--out",)),
    ("collect --num 1 --out {n} --sources nosuch", ("--sources",)),
    ("collect --num 1 --out {n} --sources residual=-1", ("--sources",)),
    ("collect --num 1 --out {n} --sources residual=x", ("--sources",)),
    ("collect --num 1 --out {n} --sources ,", ("--sources",)),
    # ------------------------------------------------------------------------------ render
    ("render --episode {t}/demos/99 --out {n}.mp4", ("--episode",)),
    ("render --episode {t}/demos/-99 --out {n}.mp4", ("--episode",)),
    ("render --episode {t}/demos --out {n}.mp4", ("--episode",)),
    ("render --episode {t}/demos/abc --out {n}.mp4", ("--episode",)),
    ("render --episode {t}/missing/0 --out {n}.mp4", ("--episode",)),
    ("render --episode {t}/corrupt/0 --out {n}.mp4", ("--episode", "info.json")),
    ("render --episode 0 --out {n}.mp4", ("--episode",)),
    ("render --episode {t}/demos/0 --out " + UNWRITABLE + "/v.mp4", ("--out",)),
    ("render --episode {t}/demos/0 --out {t}/file.txt/v.mp4", ("--out",)),
    ("render --episode {t}/demos/0 --out {t}", ("--out",)),
    ("render --episode {t}/demos/0 --out {n}.mp4 --image-size 0", ("--image-size",)),
    ("render --episode {t}/demos/0 --out {n}.mp4 --image-size -8", ("--image-size",)),
    ("render --episode {t}/demos/0 --out {n}.mp4 --image-size 100000", ("--image-size",)),
    # ---------------------------------------------------------------------------- train-w0
    ("train-w0 --data {t}/rollouts --out {n} --steps 0 --no-progress", ("--steps",)),
    ("train-w0 --data {t}/rollouts --out {n} --steps -1 --no-progress", ("--steps",)),
    ("train-w0 --data {t}/rollouts --out {n} --steps 1 --batch-size 0 --no-progress", ("--batch-size",)),
    ("train-w0 --data {t}/rollouts --out {n} --steps 1 --batch-size -4 --no-progress", ("--batch-size",)),
    ("train-w0 --data {t}/rollouts --out {n} --steps 1 --checkpoint-every 0 --no-progress", ("--checkpoint-every",)),
    ("train-w0 --data {t}/rollouts --out {n} --steps 1 --checkpoint-every -1 --no-progress", ("--checkpoint-every",)),
    ("train-w0 --data {t}/rollouts --out {n} --steps 1 --threads 0 --no-progress", ("--threads",)),
    ("train-w0 --data {t}/rollouts --out {n} --steps 1 --threads -1 --no-progress", ("--threads",)),
    ("train-w0 --data {t}/rollouts --out {n} --steps 1 --learning-rate 0 --no-progress", ("--learning-rate",)),
    ("train-w0 --data {t}/rollouts --out {n} --steps 1 --learning-rate -1 --no-progress", ("--learning-rate",)),
    ("train-w0 --data {t}/rollouts --out {n} --steps 1 --learning-rate nan --no-progress", ("--learning-rate",)),
    ("train-w0 --data {t}/rollouts --out {n} --steps 1 --learning-rate inf --no-progress", ("--learning-rate",)),
    ("train-w0 --data {t}/rollouts --out {t}/file.txt --steps 1 --no-progress", ("--out",)),
    ("train-w0 --data {t}/rollouts --out " + UNWRITABLE + " --steps 1 --no-progress", ("--out",)),
    ("train-w0 --data {t}/missing --out {n} --steps 1 --no-progress", ("--data",)),
    ("train-w0 --data {t}/file.txt --out {n} --steps 1 --no-progress", ("--data",)),
    ("train-w0 --data {t}/corrupt --out {n} --steps 1 --no-progress", ("--data", "info.json")),
    ("train-w0 --data {t}/demos --out {n} --steps 1 --no-progress", ("--data", "robot")),
    ("train-w0 --data {t}/rollouts --out {n} --steps 1 --init-from {t}/missing --no-progress", ("--init-from",)),
    ("train-w0 --data {t}/rollouts --out {n} --steps 1 --dynamics-width 0 --no-progress", ("--dynamics-width",)),
    ("train-w0 --data {t}/rollouts --out {n} --steps 1 --dynamics-contact-width -8 --no-progress", ("--dynamics-contact-width",)),
    ("train-w0 --data {t}/rollouts --out {n} --steps 1 --init-from default --dynamics-layers 4 --no-progress",
     ("--dynamics-layers", "--init-from")),
    ("train-w0 --data {t}/rollouts --out {n} --steps 1 --init-from default --dynamics-joint-prior --no-progress",
     ("--dynamics-joint-prior", "--fresh-dynamics")),
    ("train-w0 --data {t}/rollouts --out {n} --steps 1 --fresh-dynamics --no-progress", ("--fresh-dynamics", "--init-from")),
    ("train-w0 --data {t}/rollouts --out {n} --steps 1 --compile --parts renderer --no-progress", ("--compile", "--parts")),
    ("train-w0 --data {t}/rollouts --out {n} --steps 1 --parts physics --no-progress", ("--parts",)),
    ("train-w0 --data {t}/rollouts --out {n} --steps 1 --parts dynamics,dynamics --no-progress", ("--parts",)),
    ("train-w0 --data {t}/rollouts --out {n} --steps 1 --unroll-schedule 0.5:8 --no-progress", ("--unroll-schedule",)),
    ("train-w0 --data {t}/rollouts --out {n} --steps 1 --unroll-schedule 0:8,0.5 --no-progress", ("--unroll-schedule",)),
    ("train-w0 --data {t}/rollouts --out {n} --steps 1 --success-fraction 1.5 --no-progress", ("--success-fraction",)),
    ("train-w0 --data {t}/rollouts --out {n} --steps 1 --success-fraction nan --no-progress", ("--success-fraction",)),
    ("train-w0 --data {t}/rollouts --out {n} --steps 1 --symmetry-shift -0.01 --no-progress", ("--symmetry-shift",)),
    ("train-w0 --data {t}/rollouts --out {n} --steps 1 --symmetry-turn inf --no-progress", ("--symmetry-turn",)),
    ("train-w0 --data {t}/rollouts --out {n} --steps 1 --min-learning-rate -1e-5 --no-progress", ("--min-learning-rate",)),
    ("train-w0 --data {t}/rollouts --out {n} --steps 1 --warmup-steps -1 --no-progress", ("--warmup-steps",)),
    ("train-w0 --data {t}/rollouts --out {n} --steps 1 --init-from {t}/notes --no-progress", ("--init-from",)),
    ("train-w0 --data {t}/rollouts --out {n} --steps 1 --max-time -1 --no-progress", ("--max-time",)),
    ("train-w0 --data {t}/rollouts --out {n} --steps 1 --max-time nan --no-progress", ("--max-time",)),
    ("train-w0 --data {t}/rollouts --out {n} --steps 1 --dynamics-batch-size 0 --no-progress", ("--dynamics-batch-size",)),
    ("train-w0 --data {t}/rollouts --out {n} --steps 1 --dynamics-batch-size -2 --no-progress", ("--dynamics-batch-size",)),
    ("train-w0 --data {t}/rollouts --out {n} --steps 1 --dynamics-batch-size x --no-progress", ("--dynamics-batch-size",)),
    ("train-w0 --data {t}/rollouts --out {n} --steps 1 --mixed-precision fp8 --no-progress", ("--mixed-precision",)),
    ("train-w0 --data {t}/rollouts --out {n} --steps 1 --seed -1 --no-progress", ("--seed",)),
    ("train-w0 --data {t}/rollouts --out {n} --steps 1 --log-with wandb --no-progress", ("--log-with",)),
    ("train-w0 --out {n} --steps 1", ("--data",)),
    # ------------------------------------------------------------------------- ensemble-w0
    ("ensemble-w0 --models default --out {n}", ("--models", "at least 2")),
    ("ensemble-w0 --models default {t}/missing --out {n}", ("--models",)),
    ("ensemble-w0 --models default {t}/file.txt --out {n}", ("--models",)),
    ("ensemble-w0 --models default {t}/notes --out {n}", ("--models",)),
    ("ensemble-w0 --models default default --out {t}/file.txt", ("--out",)),
    ("ensemble-w0 --models default default --out " + UNWRITABLE + "/e", ("--out",)),
    # ---------------------------------------------------------------------- fit-hand-servo
    ("fit-hand-servo --data {t}/missing --out {n}", ("--data",)),
    ("fit-hand-servo --data {t}/notes --out {n}", ("--data",)),
    ("fit-hand-servo --model {t}/missing --data {t}/rollouts --out {n}", ("--model",)),
    ("fit-hand-servo --data {t}/rollouts --out {t}/file.txt", ("--out",)),
    ("fit-hand-servo --out {n}", ("--data",)),
    # ---------------------------------------------------------------------------- bench-w0
    ("bench-w0 --repeats 1 --batch-sizes 0", ("--batch-sizes",)),
    ("bench-w0 --repeats 1 --batch-sizes -1", ("--batch-sizes",)),
    ("bench-w0 --repeats 1 --batch-sizes 1 --steps 0", ("--steps",)),
    ("bench-w0 --repeats 1 --batch-sizes 1 --steps -1", ("--steps",)),
    ("bench-w0 --repeats 1 --batch-sizes 1 --threads 0", ("--threads",)),
    ("bench-w0 --repeats 1 --batch-sizes 1 --threads -1", ("--threads",)),
    ("bench-w0 --repeats 0 --batch-sizes 1", ("--repeats",)),
    ("bench-w0 --repeats -1 --batch-sizes 1", ("--repeats",)),
    ("bench-w0 --repeats 1 --batch-sizes 1 --model {t}/missing", ("--model",)),
    ("bench-w0 --repeats 1 --batch-sizes 1 --model {t}/file.txt", ("--model",)),
    ("bench-w0 --repeats 1 --batch-sizes 1 --model {t}/notes", ("--model",)),
    ("bench-w0 --repeats 1 --batch-sizes 1 --out " + UNWRITABLE + "/b", ("--out",)),
    # ----------------------------------------------------------------------------- eval-w0
    ("eval-w0 --checkpoint random:tiny --estimator random --episodes 1 --demos 1 --device cuda", ("--device",)),
    ("eval-w0 --checkpoint random:tiny --estimator random --episodes 1 --demos 1 --device potato", ("--device",)),
    ("eval-w0 --checkpoint random:tiny --estimator random --episodes 0 --demos 1", ("--episodes",)),
    ("eval-w0 --checkpoint random:tiny --estimator random --episodes -1 --demos 1", ("--episodes",)),
    ("eval-w0 --checkpoint random:tiny --estimator random --episodes 1 --demos 1 --horizon 0", ("--horizon",)),
    ("eval-w0 --checkpoint random:tiny --estimator random --episodes 1 --demos 1 --horizon 65", ("--horizon",)),
    ("eval-w0 --checkpoint random:tiny --estimator random --episodes 1 --demos 0", ("--demos",)),
    ("eval-w0 --checkpoint random:tiny --estimator random --episodes 1 --demos -1", ("--demos",)),
    ("eval-w0 --checkpoint random:tiny --estimator random --episodes 1 --demos 1 --candidates 1", ("--candidates",)),
    ("eval-w0 --checkpoint random:tiny --estimator random --episodes 1 --demos 1 --candidates x", ("--candidates",)),
    ("eval-w0 --checkpoint random:tiny --estimator random --episodes 1 --demos 1 --near-misses -1", ("--near-misses",)),
    ("eval-w0 --checkpoint random:tiny --estimator random --episodes 1 --demos 1 --num-envs 0", ("--num-envs",)),
    ("eval-w0 --checkpoint random:tiny --estimator random --episodes 1 --demos 1 --reward-model nosuch",
     ("--reward-model",)),
    ("eval-w0 --checkpoint random:tiny --estimator random --episodes 1 --demos 1 --threads 0", ("--threads",)),
    ("eval-w0 --checkpoint random:tiny --estimator random --episodes 1 --demos 1 --threads -1", ("--threads",)),
    ("eval-w0 --checkpoint random:tiny --estimator random --episodes 1 --demos 1 --seed -1", ("--seed",)),
    ("eval-w0 --checkpoint {t}/missing --estimator random --episodes 1 --demos 1", ("--checkpoint",)),
    ("eval-w0 --checkpoint {t}/notes --estimator random --episodes 1 --demos 1", ("--checkpoint",)),
    ("eval-w0 --checkpoint random:tiny --estimator {t}/missing --episodes 1 --demos 1", ("--estimator",)),
    ("eval-w0 --checkpoint random:tiny --estimator {t}/notes --episodes 1 --demos 1", ("--estimator",)),
    ("eval-w0 --checkpoint random:tiny --estimator random --episodes 1 --demos 1 --video " + UNWRITABLE, ("--video",)),
    ("eval-w0 --checkpoint random:tiny --estimator random --episodes 1 --demos 1 --video {t}/file.txt", ("--video",)),
    ("eval-w0 --checkpoint random:tiny --estimator random --episodes 1 --demos 1 --dtype int8", ("--dtype",)),
    ("eval-w0 --checkpoint random:tiny --estimator random --episodes 1 --demos 1 --out {t}/file.txt/p",
     ("--out",)),
    ("eval-w0 --checkpoint random:tiny --estimator random --episodes 1 --demos 1 --pairs 1", ("--pairs",)),
    # --------------------------------------------------------------------- train-estimator
    ("train-estimator --data {t}/rollouts --out {n} --steps 0", ("--steps",)),
    ("train-estimator --data {t}/rollouts --out {n} --steps -1", ("--steps",)),
    ("train-estimator --data {t}/rollouts --out {n} --steps 1 --batch-size 0", ("--batch-size",)),
    ("train-estimator --data {t}/rollouts --out {n} --steps 1 --learning-rate 0", ("--learning-rate",)),
    ("train-estimator --data {t}/rollouts --out {n} --steps 1 --learning-rate nan", ("--learning-rate",)),
    ("train-estimator --data {t}/rollouts --out {n} --steps 1 --val-fraction 1", ("--val-fraction",)),
    ("train-estimator --data {t}/rollouts --out {n} --steps 1 --val-fraction -0.1", ("--val-fraction",)),
    ("train-estimator --data {t}/rollouts --out {n} --steps 1 --device cuda", ("--device",)),
    ("train-estimator --data {t}/rollouts --out {n} --steps 1 --device potato", ("--device",)),
    ("train-estimator --data {t}/rollouts --out {t}/file.txt --steps 1", ("--out",)),
    ("train-estimator --data {t}/rollouts --out " + UNWRITABLE + " --steps 1", ("--out",)),
    ("train-estimator --data {t}/rollouts --out {t}/notes --steps 1", ("--out",)),
    ("train-estimator --data {t}/missing --out {n} --steps 1", ("--data",)),
    ("train-estimator --data {t}/corrupt --out {n} --steps 1", ("--data", "info.json")),
    ("train-estimator --data {t}/rollouts --eval-data {t}/missing --out {n} --steps 1", ("--eval-data",)),
    ("train-estimator --data {t}/rollouts --out {n} --steps 1 --seed -1", ("--seed",)),
    ("train-estimator --data {t}/rollouts --out {n} --steps 1 --log-with wandb", ("--log-with",)),
    # ------------------------------------------------------------------------------- bench
    ("bench --world-model random:tiny --estimator random --no-sim --steps 1 --num-envs 0", ("--num-envs",)),
    ("bench --world-model random:tiny --estimator random --no-sim --steps 1 --num-envs ,", ("--num-envs",)),
    ("bench --world-model random:tiny --estimator random --no-sim --steps 1 --num-envs a", ("--num-envs",)),
    ("bench --world-model random:tiny --estimator random --no-sim --num-envs 1 --steps 0", ("--steps",)),
    ("bench --world-model random:tiny --estimator random --no-sim --num-envs 1 --steps 1 --warmup -1", ("--warmup",)),
    ("bench --world-model random:tiny --estimator random --no-sim --num-envs 1 --steps 1 --threads 0", ("--threads",)),
    ("bench --world-model random:tiny --estimator random --no-sim --num-envs 1 --steps 1 --threads -1", ("--threads",)),
    ("bench --world-model random:tiny --estimator random --num-envs 1 --steps 1 --sim-workers 0", ("--sim-workers",)),
    ("bench --world-model random:tiny --estimator random --no-sim --num-envs 1 --steps 1 --device cuda", ("--device",)),
    ("bench --world-model random:tiny --estimator random --no-sim --num-envs 1 --steps 1 --device potato", ("--device",)),
    ("bench --world-model random:tiny --estimator random --no-sim --num-envs 1 --steps 1 --dtype int8", ("--dtype",)),
    ("bench --world-model {t}/missing --estimator random --no-sim --num-envs 1 --steps 1", ("--world-model",)),
    ("bench --world-model random:tiny --estimator {t}/missing --no-sim --num-envs 1 --steps 1", ("--estimator",)),
    ("bench --world-model random:tiny --estimator random --reward-model nosuch --no-sim --num-envs 1 --steps 1",
     ("--reward-model",)),
    ("bench --world-model random:tiny --estimator random --reward-model nosuch.module:X --no-sim --num-envs 1 --steps 1",
     ("--reward-model",)),
    ("bench --world-model random:tiny --estimator random --no-sim --num-envs 1 --steps 1 --seed -1", ("--seed",)),
    ("bench --world-model random:tiny --estimator random --no-sim --num-envs 1 --steps 1 --out {t}/file.txt/b",
     ("--out",)),
    # ---------------------------------------------------------------------------- flywheel
    ("flywheel --out {n} --iterations 0", ("--iterations",)),
    ("flywheel --out {n} --robot-episodes -1", ("--robot-episodes",)),
    ("flywheel --out {n} --consistency-reruns -1", ("--consistency-reruns",)),
    ("flywheel --out {n} --consistency-noise -0.003", ("--consistency-noise",)),
    ("flywheel --out {n} --consistency-noise nan", ("--consistency-noise",)),
    ("flywheel --out {n} --min-consistency 1.5", ("--min-consistency",)),
    ("flywheel --out {n} --second-opinion /no/such/w0", ("--second-opinion",)),
    ("flywheel --out {n} --w0-rehearsal -1", ("--w0-rehearsal",)),
    ("flywheel --out {n} --w0-learning-rate -0.1", ("--w0-learning-rate",)),
    ("flywheel --out {n} --w0-learning-rate inf", ("--w0-learning-rate",)),
    ("flywheel --out {n} --world-model {t}/missing", ("--world-model",)),
    ("flywheel --out {n} --estimator {t}/missing", ("--estimator",)),
    ("flywheel --out {n} --policy {t}/missing", ("--policy",)),
    ("flywheel --out {t}/file.txt", ("--out",)),
    # ------------------------------------------------------------------------------ top level
    ("", ("command",)),
    ("juggle", ("juggle",)),
]


def _limit_memory() -> None:
    limit = 6 * 1024**3  # a 100000 px frame must fail, not take the machine down
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def run_case(repo: Path, fixtures: Path, number: int, template: str, tokens: tuple[str, ...], timeout: float
             ) -> dict:
    import shlex

    argv = shlex.split(template.format(t=fixtures, n=fixtures / f"case{number}"))
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "PYTHONPATH": str(repo),
           "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    start = time.perf_counter()
    try:
        result = subprocess.run([sys.executable, "-m", "psi_gym.cli", *argv], cwd=repo, env=env, capture_output=True,
                                text=True, timeout=timeout, preexec_fn=_limit_memory)
        code, stderr = result.returncode, result.stderr
    except subprocess.TimeoutExpired as error:
        code, stderr = None, (error.stderr or b"").decode(errors="replace") if isinstance(error.stderr, bytes) else (
            error.stderr or "")
    lines = [line for line in stderr.splitlines() if line.strip()]
    if code is None:
        outcome = "timeout"
    elif code == 0:
        outcome = "silent"
    elif code != 2 or "Traceback" in stderr:
        outcome = "traceback"
    elif len(lines) == 1 and any(token in lines[0] for token in tokens):
        outcome = "clear"
    else:
        outcome = "vague"
    return {"case": template.format(t="T", n="T/new"), "outcome": outcome, "exit": code,
            "seconds": round(time.perf_counter() - start, 1), "last_line": lines[-1][:300] if lines else ""}


def lenient(result: dict, tokens: tuple[str, ...]) -> str:
    """The classification of the issue's first count: exit 2 naming the flag is clear even with
    argparse's usage line above it."""
    if result["outcome"] == "vague" and any(token in result["last_line"] for token in tokens):
        return "clear"
    return result["outcome"]


def table(paths: list[Path]) -> str:
    """A markdown table of several runs' ``--json`` files: strict and lenient counts."""
    kinds = ("clear", "vague", "traceback", "silent", "timeout")
    rows = ["| run | cases | " + " | ".join(kinds) + " | clear, usage line allowed |", "|---" * (len(kinds) + 3) + "|"]
    for path in paths:
        run = json.loads(path.read_text())
        tokens = [tokens for _, tokens in CASES]
        strict = [case["outcome"] for case in run["cases"]]
        loose = [lenient(case, tokens[i]) for i, case in enumerate(run["cases"])]
        rows.append(f"| {path.stem} | {len(strict)} | " + " | ".join(str(strict.count(k)) for k in kinds)
                    + f" | {loose.count('clear')} |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1], help="checkout to try")
    parser.add_argument("--only", default="", help="comma list of subcommands (default: all)")
    parser.add_argument("--jobs", type=int, default=2, help="cases run at once")
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds per case")
    parser.add_argument("--json", type=Path, default=None, help="write every case's outcome here")
    parser.add_argument("--table", type=Path, nargs="+", default=None,
                        help="print a table of earlier --json runs (all cases, in order) instead of running")
    args = parser.parse_args()
    if args.table:
        print(table(args.table))
        return 0
    only = {name for name in args.only.split(",") if name}
    cases = [(i, template, tokens) for i, (template, tokens) in enumerate(CASES)
             if not only or (template.split() or [""])[0] in only]
    with tempfile.TemporaryDirectory(prefix="psi-bad-inputs-") as folder:
        fixtures = Path(folder)
        env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "PYTHONPATH": str(args.repo)}
        subprocess.run([sys.executable, "-c", FIXTURES, str(fixtures)], cwd=args.repo, env=env, check=True)
        with ThreadPoolExecutor(args.jobs) as pool:
            results = list(pool.map(lambda case: run_case(args.repo, fixtures, *case, args.timeout), cases))
    counts: dict[str, int] = {}
    for result in results:
        counts[result["outcome"]] = counts.get(result["outcome"], 0) + 1
        if result["outcome"] != "clear":
            print(f"{result['outcome']:9s} exit={result['exit']} {result['case']}\n          {result['last_line']}")
    print(f"{len(results)} cases: " + ", ".join(f"{counts.get(k, 0)} {k}" for k in
                                                ("clear", "vague", "traceback", "silent", "timeout")))
    if args.json:
        args.json.write_text(json.dumps({"repo": str(args.repo), "counts": counts, "cases": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
