"""Canary: a second MIG version of `canary_size` instances (fixed or percent), verified while it
serves beside the old one; then the whole group moves to it, or the canary is taken away."""

from django.conf import settings

from .base import NOW
from .rolling import Rolling


def target_size(spec: str) -> dict:
    spec = str(spec).strip()
    if spec.endswith("%"):
        return {"percent": int(spec[:-1])}
    return {"fixed": int(spec)}


class Canary(Rolling):
    def versions(self, new_url: str) -> list[dict]:
        if self.deployment.progress.get("phase", "canary") == "promote":
            return super().versions(new_url)
        size = target_size(self.step.option("canary_size", settings.GANTRY_CANARY_SIZE))
        return [
            {"name": "stable", "instance_template": self.deployment.previous["template"]},
            {"name": "canary", "instance_template": new_url, "target_size": size},
        ]

    def roll_out(self):
        if "phase" not in self.deployment.progress:
            self.step.save(progress={**self.deployment.progress, "phase": "canary"})
        return super().roll_out()

    def settled_template(self, new_url: str):
        return new_url if self.deployment.progress.get("phase") == "promote" else None

    def verified(self):
        if self.deployment.progress.get("phase") == "promote":
            return super().verified()
        self.step.save(progress={**self.deployment.progress, "phase": "promote"}, verification={})
        self.deployment.transition(
            self.deployment.S.ROLLING_OUT, reason="canary healthy; promoting it to every instance"
        )
        return NOW
