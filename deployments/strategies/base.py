"""What every strategy shares: ending states, template naming, deadlines."""

from __future__ import annotations

from django.conf import settings

from gcp.names import region_of

from ..models import Deployment
from ..steps import NOW, STOP, Step, StepFailed, later

S = Deployment.State


def template_name(step: Step) -> str:
    """Deterministic from deployment and image, so a re-run finds the template it made."""
    digest = step.deployment.release.digest.removeprefix("sha256:")[:10]
    return f"gantry-{step.component.name}-{digest}-d{step.deployment.pk}"[:63]


def template_location(url: str) -> str | None:
    """The region of a regional template URL, or None for a global one."""
    return region_of(url)


class Strategy:
    def __init__(self, step: Step):
        self.step = step
        self.deployment = step.deployment
        self.component = step.component
        self.gcp = step.gcp

    # --- what each strategy provides ---------------------------------------------------------

    def roll_out(self):
        raise NotImplementedError

    def roll_back(self):
        raise NotImplementedError

    def instances_healthy(self) -> tuple[bool, str]:
        """Whether the new instances are up and healthy, with a line saying so."""
        return True, "no instance check for this strategy"

    def promote_requested(self) -> bool:
        """A person asked to skip the rest of the observation (canaries only)."""
        return False

    def analysed(self) -> bool:
        """Whether verification goes on to judge a canary by its metrics (canaries only)."""
        return False

    def analysis_groups(self) -> tuple[list[str], list[str]]:
        """The instance names of the canary and of the baseline it is judged against."""
        raise NotImplementedError

    def verified(self):
        """Verification passed: finish (strategies with more to do override this)."""
        self.deployment.transition(
            S.SUCCEEDED, reason=self.deployment.verification.get("summary", "healthy")
        )
        return STOP

    # --- shared helpers ----------------------------------------------------------------------

    def deadline_passed(self, setting: str, default: float) -> float | None:
        limit = self.step.option(setting, default)
        return limit if self.step.seconds_in_state() > limit else None

    def rollout_deadline(self, what: str):
        limit = self.deadline_passed("rollout_timeout", settings.GANTRY_ROLLOUT_TIMEOUT)
        if limit:
            raise StepFailed(f"{what} not done after {limit:g}s")

    def wait_for(self, what: str):
        """Not there yet: fail past the rollout deadline, else say so and come back."""
        self.rollout_deadline(what)
        self.step.waiting(what)
        return later()

    def rolled_back(self, what: str):
        why = self.deployment.reason or "rolled back"
        self.deployment.transition(S.ROLLED_BACK, reason=f"{what}; cause: {why}"[:1000])
        return STOP

    def new_template(self) -> str:
        """The deployment's template: its URL once found, else its name."""
        return self.deployment.progress.get("template_url") or self.deployment.template

    def done(self, what: str) -> bool:
        """Whether an operation for `what` was started (it may still run)."""
        return self.step.started(what)

    def wait_op(self, what: str) -> bool:
        """True when the operation recorded for `what` is done (or none was recorded)."""
        done = self.step.operation_done(what)
        return done is None or done


__all__ = [
    "NOW",
    "STOP",
    "StepFailed",
    "Strategy",
    "later",
    "template_location",
    "template_name",
]
