"""Checks of the ``psi-gym`` commands' arguments, shared by every part's ``commands.py``.

Every value is checked at start-up, before any work, and a bad one is one line naming the flag
(``psi-gym collect: error: argument --seed: expected an int in [0, 2**63 - 1], got -5``) and
exit status 2:

* argparse ``type=`` callables (`int_at_least`, `int_in`, `number_in`, `seed`, `device`,
  `int_list`) reject a value while the command line is parsed;
* output paths need the file system and are checked when the job starts (`check_output_file`,
  `check_output_dir`); the dataset writers add their own ``--out`` checks (lock, resume,
  overwrite) in `psi_gym.data.writer.DatasetJobWriter.open`;
* input folders (`check_name_or_folder`) are checked when the job starts too;
* a check that needs more than one value raises `ArgumentProblem`, which the CLI prints the same
  way.

They sit in ``data/`` because it is the lowest part every command imports; nothing here
imports torch until a ``--device`` other than ``cpu`` is named.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from pathlib import Path

from psi_gym.data.atomic import TMP_MARK

MAX_SEED = 2**63 - 1  # seeds are stored as int64 (datasets, checkpoints)


class ArgumentProblem(ValueError):
    """A command-line value that cannot work, found when the job starts; names the flag."""

    def __init__(self, flag: str, problem: str):
        super().__init__(f"argument {flag}: {problem}")
        self.flag = flag


def _parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int, got {text!r}") from None


def int_in(low: int, high: int, what: str = "") -> Callable[[str], int]:
    """argparse type: an int in ``[low, high]``."""

    def parse(text: str) -> int:
        value = _parse_int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected an int in [{low}, {_show(high)}]{what}, got {value}")
        return value

    parse.__name__ = "int"  # argparse names the type in some messages
    return parse


def pool_spec(text: str) -> tuple[int, int]:
    """argparse type of a candidate pool: ``SEED:DEMOS`` (eval-w0's --seed and --demos)."""
    try:
        pool_seed, demos = (int(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SEED:DEMOS (two integers, e.g. 13:48), got {text!r}") from None
    if demos < 1:
        raise argparse.ArgumentTypeError(f"DEMOS must be at least 1, got {text!r}")
    return pool_seed, demos


def int_at_least(low: int, what: str = "") -> Callable[[str], int]:
    """argparse type: an int >= ``low``."""

    def parse(text: str) -> int:
        value = _parse_int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an int >= {low}{what}, got {value}")
        return value

    parse.__name__ = "int"
    return parse


def number_in(low: float, high: float = math.inf, *, low_open: bool = False, high_open: bool = False,
              what: str = "") -> Callable[[str], float]:
    """argparse type: a finite float in the interval ``low .. high`` (ends open or closed)."""
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        inside = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
        if not math.isfinite(value) or not inside:
            raise argparse.ArgumentTypeError(f"expected a finite number in {interval}{what}, got {text}")
        return value

    parse.__name__ = "float"
    return parse


seed = int_in(0, MAX_SEED)
"""argparse type of every ``--seed``: episodes and generators are seeded from ``(seed, index)``."""

positive_int = int_at_least(1)
threads = int_at_least(1, " (torch threads)")
image_size = int_in(16, 1024, " (pixels per side)")


def int_list(text: str) -> list[int]:
    """argparse type: a comma list of positive ints (``1,16,64``)."""
    try:
        numbers = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma list of positive ints, got {text!r}") from None
    if not numbers or min(numbers) < 1:
        raise argparse.ArgumentTypeError(f"expected a comma list of positive ints, got {text!r}")
    return numbers


def device(text: str) -> str:
    """argparse type: a torch device this machine has (``cpu``, ``cuda``, ``cuda:1``, ``mps``)."""
    if text == "cpu":
        return text
    import torch

    try:
        parsed = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected a torch device such as cpu, cuda or cuda:0, got {text!r}") from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise argparse.ArgumentTypeError(f"{text!r}: this machine has no CUDA device (torch "
                                             f"{torch.__version__}); use --device cpu")
        if parsed.index is not None and parsed.index >= count:
            raise argparse.ArgumentTypeError(f"{text!r}: this machine has {count} CUDA device(s)")
    elif parsed.type == "mps":
        if not torch.backends.mps.is_available():
            raise argparse.ArgumentTypeError(f"{text!r}: MPS is not available here; use --device cpu")
    elif parsed.type != "cpu":
        raise argparse.ArgumentTypeError(f"{text!r}: psi_gym runs on cpu, cuda or mps")
    return text


LOG_WITH = ("auto", "csv", "tensorboard", "none")


def log_with(text: str) -> str:
    """argparse type of ``--log-with`` (`psi_gym.data.metrics`): ``tensorboard`` only where it is installed."""
    import importlib.util

    if text not in LOG_WITH:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(LOG_WITH)}, got {text!r}")
    if text == "tensorboard" and not any(importlib.util.find_spec(name) for name in ("tensorboard", "tensorboardX")):
        raise argparse.ArgumentTypeError("tensorboard is not installed (pip install tensorboard); csv needs nothing")
    return text


def _show(number: int) -> str:
    return "2**63 - 1" if number == MAX_SEED else str(number)


# ------------------------------------------------------------------------------ output paths
def _probe(folder: Path, flag: str, path: Path) -> None:
    """Create (and remove) a file in ``folder``: the test that counts, for root too."""
    probe = folder / f".psi-gym-probe{TMP_MARK}{os.getpid()}"
    try:
        probe.touch()
        probe.unlink()
    except OSError as error:
        raise ArgumentProblem(flag, f"cannot write {path}: {folder} does not take new files ({error.strerror or error})"
                              ) from None


def _creatable_folder(folder: Path, flag: str, path: Path) -> None:
    existing = folder
    while not existing.exists():
        if existing.is_symlink():
            raise ArgumentProblem(flag, f"cannot write {path}: {existing} is a dangling symlink")
        existing = existing.parent
    if not existing.is_dir():
        raise ArgumentProblem(flag, f"cannot write {path}: {existing} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ArgumentProblem(flag, f"cannot create the folder {folder} ({error.strerror or error})") from None
    _probe(folder, flag, path)


def check_output_file(path: Path, flag: str = "--out") -> Path:
    """``path`` can be written as a file: it is not a folder, and its folder exists (or can be made)
    and takes new files. Creates the folder; writes nothing at ``path``."""
    path = Path(path)
    if str(path) in ("", "."):
        raise ArgumentProblem(flag, "expected a file path, got an empty one")
    if path.is_dir():
        raise ArgumentProblem(flag, f"{path} is a folder; expected a file path")
    _creatable_folder(path.parent, flag, path)
    return path


def check_output_dir(path: Path, flag: str = "--out") -> Path:
    """``path`` is (or can be made) a folder that takes new files. Creates it."""
    path = Path(path)
    if str(path) == "":
        raise ArgumentProblem(flag, "expected a folder path, got an empty one")
    if path.exists() and not path.is_dir():
        raise ArgumentProblem(flag, f"{path} is a file; expected a folder")
    _creatable_folder(path, flag, path)
    return path


def check_output_parent(path: Path, flag: str = "--out") -> Path:
    """The folder that will hold ``path`` (a dataset, swapped in by rename) exists or can be made
    and takes new entries; ``path`` itself is not created."""
    path = Path(path)
    if str(path) in ("", "."):
        raise ArgumentProblem(flag, "expected a folder path, got an empty one")
    _creatable_folder(path.absolute().parent, flag, path)
    return path


def check_name_or_folder(value: str | None, flag: str, names: tuple[str, ...]) -> None:
    """An input asset (``--world-model``, ``--estimator``, ``--policy``): a name its loader knows
    (``names``, or ``random:...``), None (not given) or a folder that exists."""
    if value is None or value in names or value.startswith("random:"):
        return
    if not Path(value).is_dir():
        raise ArgumentProblem(flag, f"expected {', '.join(repr(n) for n in names)} or a folder, got {value!r} "
                                    "(no such folder)")


__all__ = [
    "MAX_SEED",
    "ArgumentProblem",
    "check_name_or_folder",
    "check_output_dir",
    "check_output_file",
    "check_output_parent",
    "device",
    "image_size",
    "int_at_least",
    "int_in",
    "int_list",
    "log_with",
    "number_in",
    "pool_spec",
    "positive_int",
    "seed",
    "threads",
]
