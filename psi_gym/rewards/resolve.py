"""Turn what a user passes as ``reward_model=`` into a reward model.

``reward_model`` may be:

* a reward-model object (anything with ``__call__(batch) -> RewardOutput``), used as is;
* a name of a built-in: ``"object_tracking"``, ``"success_classifier"`` (built with the env's
  ``estimator``), ``"state_tracking"`` (reads the world model's own object state, no estimator),
  ``"calibrated_state"`` (the same tracking, its success bonus times the probability that the
  simulator confirms it, from the shipped calibrator);
* a dotted path ``"package.module:Name"`` to a class (instantiated with no arguments), a
  reward-model object or a function;
* a function ``fn(batch) -> rewards``, wrapped in `CallableReward`.

Security: a dotted path *imports and runs code*. ``"package.module:Name"`` imports ``package.module``
(running its top-level code) and, for a class, calls ``Name()``: whoever chooses the string chooses
what runs, with this process's rights. Pass dotted paths only from trusted configuration, never
from an untrusted request, file or dataset (the same holds for ``gym.make(..., reward_model=...)``
and ``psi-gym bench --reward-model``). Names of built-ins and objects run nothing new.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from psi_gym.rewards.base import RewardModel
from psi_gym.rewards.calibrated_state import CalibratedStateReward
from psi_gym.rewards.object_tracking import ObjectTrackingReward
from psi_gym.rewards.success_classifier import SuccessClassifierReward
from psi_gym.rewards.user_function import CallableReward
from psi_gym.rewards.state_tracking import StateTrackingReward

REWARD_MODELS: dict[str, Callable[..., RewardModel]] = {
    "object_tracking": ObjectTrackingReward,
    "success_classifier": SuccessClassifierReward,
    "state_tracking": lambda estimator: StateTrackingReward(),  # reads the object state: no estimator
    "calibrated_state": lambda estimator: CalibratedStateReward(),  # the object's path and the shipped calibrator
}


def resolve_reward_model(spec: Any, estimator: Any = "default") -> RewardModel:
    """What ``reward_model=`` accepts (see the module doc) -> a reward model.

    Raises:
        ValueError: an unknown name (the message lists the built-ins) or a dotted path that does
            not import.
        TypeError: something that is not callable.
    """
    if isinstance(spec, str):
        if spec in REWARD_MODELS:
            return REWARD_MODELS[spec](estimator)
        if ":" not in spec:
            raise ValueError(
                f"unknown reward model {spec!r}: expected one of {sorted(REWARD_MODELS)}, a dotted path "
                "'package.module:Name', a reward-model object or a function batch -> rewards"
            )
        spec = _import_dotted(spec)
        if inspect.isclass(spec):
            spec = spec()
    if inspect.isclass(spec):
        raise TypeError(f"reward_model must be an instance, not the class {spec.__name__}; pass {spec.__name__}(...)")
    if not callable(spec):
        raise TypeError(f"reward_model must be callable (batch -> RewardOutput or rewards), got {type(spec).__name__}")
    if inspect.isfunction(spec) or inspect.ismethod(spec) or inspect.isbuiltin(spec) or not hasattr(spec, "__dict__"):
        return CallableReward(spec)
    return spec


def _import_dotted(path: str) -> Any:
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"reward model {path!r}: cannot import module {module_name!r} ({error})") from None
    value = module
    for part in attribute.split("."):
        if not hasattr(value, part):
            raise ValueError(f"reward model {path!r}: {module_name!r} has no attribute {attribute!r}")
        value = getattr(value, part)
    return value
