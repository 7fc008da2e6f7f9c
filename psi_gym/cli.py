"""`psi-gym`: one subcommand per job. With ``--json`` a job prints exactly one JSON object on
stdout (its summary); progress and logs go to stderr.

The CLI is the top floor: each part declares its subcommands in its own ``commands.py`` as
``COMMANDS = {name: (help, configure(parser), run(args) -> summary)}``, and this module lists
them; no part imports it. A summary is a dataclass (its ``to_dict()`` if it has one, else
`dataclasses.asdict`) or a dict.

Bad input is one line on stderr and exit status 2, never a traceback: a value argparse's
``type=`` refuses (`psi_gym.data.arguments`), a check when the job starts (`ArgumentProblem`:
``--out`` not writable, locked by another writer, ``--device`` absent ...), or an input that turns
out unusable (`BAD_INPUT`: a corrupt dataset, a missing checkpoint, an unknown name). Exit 0 is
success; 130 an interrupt (Ctrl-C); anything else is a bug, with its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from psi_gym.agents import commands as agents_commands
from psi_gym.envs import commands as envs_commands
from psi_gym.flywheel import commands as flywheel_commands
from psi_gym.retarget import commands as retarget_commands
from psi_gym.rewards import commands as rewards_commands
from psi_gym.world_model import commands as world_model_commands

Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], Any]]


def _merge(*tables: dict[str, Command]) -> dict[str, Command]:
    merged: dict[str, Command] = {}
    for table in tables:
        for name, command in table.items():
            if name in merged:
                raise RuntimeError(f"two parts declare the subcommand {name!r}")
            merged[name] = command
    return merged


COMMANDS: dict[str, Command] = _merge(
    retarget_commands.COMMANDS,
    world_model_commands.COMMANDS,
    rewards_commands.COMMANDS,
    envs_commands.COMMANDS,
    agents_commands.COMMANDS,
    flywheel_commands.COMMANDS,
)
"""Every subcommand, in the order of the data flow (the order of ``psi-gym --help``)."""


BAD_INPUT: tuple[type[BaseException], ...] = (ValueError, OSError, KeyError, ImportError)
"""What a job raises for input it cannot use; the CLI prints it as one line and exits 2.
(`psi_gym.data.episode.EpisodeError`, `DatasetError`, `CheckpointError`, `ArgumentProblem` are
ValueErrors; `TargetLockedError` and `FileExistsError` OSErrors; a missing extra an ImportError.)"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``psi-gym demos: error: argument --num: ...``)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from psi_gym import version_string

    parser = _Parser(prog="psi-gym", description=__doc__.split("\n\n")[0],
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=version_string())
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, configure, _) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        configure(sub)
        sub.add_argument("--json", action="store_true", help="print one JSON summary object on stdout")
    return parser


def summary_dict(summary: Any) -> dict[str, Any]:
    """A job's summary as the dict its JSON prints."""
    if hasattr(summary, "to_dict"):
        return summary.to_dict()
    if dataclasses.is_dataclass(summary) and not isinstance(summary, type):
        return dataclasses.asdict(summary)
    return dict(summary)


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; returns the exit status (0 ok, 2 bad input, 130 interrupted)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # --help, --version (0) or a usage error, already printed (2)
        return stop.code if isinstance(stop.code, int) else 2
    _, _, run = COMMANDS[args.command]
    try:
        summary = summary_dict(run(args))
    except KeyboardInterrupt:
        log(f"psi-gym {args.command}: interrupted (whatever was committed stays; rerun the command to resume)")
        return 130
    except BAD_INPUT as error:
        log(f"psi-gym {args.command}: error: {_one_line(error)}")
        return 2
    if args.json:
        print(json.dumps(summary, default=_jsonable))
    else:
        for key, value in summary.items():
            log(f"{key}: {json.dumps(value, default=_jsonable)}")
    return 0


def _one_line(error: BaseException) -> str:
    """The error's message on one line (a KeyError's without its quotes)."""
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    return " ".join(text.split()) or type(error).__name__


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


if __name__ == "__main__":
    sys.exit(main())
