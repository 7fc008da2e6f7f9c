"""Tests that need the shipped default Psi-W0 (``psi_gym/assets/w0-default``) call
`require_default_world_model` first.

It skips the test, saying why, in one case only: the shipped checkpoint was written for an earlier
`WorldModel` architecture (its ``config.json`` names arguments the class no longer takes, or lacks
ones it needs) and so fails to load. That is the state between an architecture change and the new
default landing; once the new checkpoint ships, the tests run again by themselves. Any other
problem (a missing folder, corrupt weights, a checkpoint of the current architecture that does not
load) is not skipped: the test goes on and fails where it fails.
"""

from __future__ import annotations

import functools
import inspect
import json

import pytest

IGNORED_KEYS = {"pretrained_backbone", "self"}


def _architecture_drift(config: dict) -> str | None:
    """What in ``config`` (a WorldModel config.json) the current class does not match, or None."""
    from psi_gym.world_model.model import WorldModel

    parameters = set(inspect.signature(WorldModel.__init__).parameters) - IGNORED_KEYS
    stale = sorted(key for key in config if not key.startswith("_") and key not in parameters)
    missing = sorted(key for key in parameters if key not in config)
    if not stale and not missing:
        return None
    return f"config.json holds {stale} and lacks {missing}"


@functools.cache
def _outdated_default() -> str | None:
    """Why the shipped default is an earlier architecture that fails to load, or None."""
    from psi_gym.world_model.checkpoint import CheckpointError, default_checkpoint_path
    from psi_gym.world_model.model import WorldModel

    folder = default_checkpoint_path()
    if not (folder / "config.json").is_file():
        return None  # absent: the tests say how to make it (FileNotFoundError), no skip
    try:
        WorldModel.from_pretrained("default")
    except (CheckpointError, ValueError) as error:
        try:
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        drift = _architecture_drift(config) if isinstance(config, dict) else None
        if drift is None:
            return None
        return (f"the shipped default W0 ({folder}) is an earlier WorldModel architecture and does not load "
                f"({drift}; {type(error).__name__}); this test runs again once the new default checkpoint ships")
    return None


def require_default_world_model() -> None:
    """Skip the calling test only if the shipped default W0 is of an earlier architecture (module doc)."""
    reason = _outdated_default()
    if reason is not None:
        pytest.skip(reason)
