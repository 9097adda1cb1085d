"""Canary: a second MIG version of `canary_size` instances (fixed or percent), verified while it
serves beside the old one; then the whole group moves to it, or the canary is taken away.

A person may promote it early (`Deployment.promote_now`): the canary phase ends at the next step
and the whole group is verified as in any rollout. Pausing and aborting are the engine's."""

from django.conf import settings

from .base import NOW
from .rolling import Rolling


def target_size(spec: str) -> dict:
    spec = str(spec).strip()
    if spec.endswith("%"):
        return {"percent": int(spec[:-1])}
    return {"fixed": int(spec)}


class Canary(Rolling):
    def in_canary_phase(self) -> bool:
        return self.deployment.progress.get("phase", "canary") == "canary"

    def promote_requested(self) -> bool:
        return self.in_canary_phase() and bool(self.deployment.promote_requested_by)

    def analysed(self) -> bool:
        return self.in_canary_phase() and self.component.analysis.enabled

    def analysis_groups(self) -> tuple[list[str], list[str]]:
        """Running instances of the new template against those of the one it replaces, over
        the same window: the baseline serves beside the canary, as Kayenta compares them."""
        new, old = self.new_template(), self.deployment.previous["template"]
        instances = [i for i in self.mig.instances() if i.status == "RUNNING"]
        return (
            [i.name for i in instances if i.runs(new)],
            [i.name for i in instances if i.runs(old)],
        )

    def versions(self, new_url: str) -> list[dict]:
        if not self.in_canary_phase():
            return super().versions(new_url)
        size = target_size(self.step.option("canary_size", settings.GANTRY_CANARY_SIZE))
        return [
            {"name": "stable", "instance_template": self.deployment.previous["template"]},
            {"name": "canary", "instance_template": new_url, "target_size": size},
        ]

    def roll_out(self):
        if self.promote_requested():
            by = self.deployment.promote_requested_by
            self.step.save(
                f"promoted early by {by}: every instance moves to the new version",
                progress={**self.deployment.progress, "phase": "promote"},
            )
            return NOW
        if "phase" not in self.deployment.progress:
            self.step.save(progress={**self.deployment.progress, "phase": "canary"})
        return super().roll_out()

    def settled_template(self, new_url: str):
        return None if self.in_canary_phase() else new_url

    def verified(self):
        if not self.in_canary_phase():
            return super().verified()
        if self.promote_requested():
            why = f"promoted early by {self.deployment.promote_requested_by}"
        elif score := self.deployment.analysis.get("score"):
            why = f"canary analysis passed (score {score:.0f}); promoting it to every instance"
        else:
            why = "canary healthy; promoting it to every instance"
        self.step.save(progress={**self.deployment.progress, "phase": "promote"}, verification={})
        self.deployment.transition(self.deployment.S.ROLLING_OUT, reason=why)
        return NOW
