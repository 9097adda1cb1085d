"""Rollout strategies. Each knows how to roll a new image out, how to tell that its instances are
healthy, what to do once verification passed, and how to roll back; every method is one
idempotent step that returns an engine Outcome."""

from ..models import Deployment
from .blue_green import BlueGreen
from .canary import Canary
from .rolling import Rolling
from .single_vm import SingleVm

STRATEGIES = {
    "rolling": Rolling,
    "canary": Canary,
    "blue_green": BlueGreen,
    "recreate": SingleVm,
}


def strategy_for(step):
    strategy = STRATEGIES.get(step.deployment.strategy)
    if strategy is None:
        raise ValueError(f"no strategy {step.deployment.strategy!r} for {step.deployment}")
    return strategy(step)


__all__ = ["STRATEGIES", "Deployment", "strategy_for"]
