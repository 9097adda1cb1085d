"""Rolling update of one regional MIG: new template, then replace instances zone by zone.

The policy the team used: surge new instances first and never take one away before its
replacement serves (maxSurge 2, maxUnavailable 0; GCP wants a regional group's fixed surge to be
0 or at least its number of zones).
"""

from .base import NOW, Strategy, later
from .mig import MigTarget, ensure_template, healthy


class Rolling(Strategy):
    def __init__(self, step):
        super().__init__(step)
        self.mig = MigTarget(step, self.component.mig)

    def update_policy(self) -> dict:
        zones = len(self.step.environment.zones)
        surge = self.step.option("max_surge", max(2, zones))
        unavailable = self.step.option("max_unavailable", 0)
        return {
            "type": "PROACTIVE",
            "minimal_action": "REPLACE",
            "replacement_method": "SUBSTITUTE",
            "max_surge": {"fixed": surge},
            "max_unavailable": {"fixed": unavailable},
        }

    def remember_previous(self) -> str:
        previous = self.deployment.previous.get("template")
        if not previous:
            mig = self.mig.get()
            stable = [
                v for v in mig.versions if not v.target_size.fixed and not v.target_size.percent
            ]
            previous = (stable or list(mig.versions))[0].instance_template
            self.step.save(
                f"{self.mig.name} runs {previous.rsplit('/', 1)[-1]} now",
                previous={
                    **self.deployment.previous,
                    "template": previous,
                    "size": mig.target_size,
                },
            )
        return previous

    def versions(self, new_url: str) -> list[dict]:
        return [{"name": f"d{self.deployment.pk}", "instance_template": new_url}]

    def roll_out(self):
        previous = self.remember_previous()
        new_url = ensure_template(self.step, previous)
        if new_url is None:
            self.rollout_deadline("creating the instance template")
            return later()
        phase = self.deployment.progress.get("phase", "update")
        what = f"patch-{phase}"
        if not self.step.pending_operation(what) and not self.patched(what):
            self.mig.patch(
                what, {"versions": self.versions(new_url), "update_policy": self.update_policy()}
            )
            return later()
        if not self.wait_op(what):
            self.rollout_deadline(f"{self.mig.name} update")
            return later()
        if not self.mig.settled_on(self.settled_template(new_url)):
            self.rollout_deadline(f"{self.mig.name} rolling update")
            return later()
        self.deployment.transition(
            self.deployment.S.VERIFYING,
            reason=f"{self.mig.name} stable on {self.deployment.template}",
        )
        return NOW

    def patched(self, what: str) -> bool:
        return any(op["what"] == what for op in self.deployment.operations)

    def settled_template(self, new_url: str) -> str | None:
        return new_url

    def instances_healthy(self) -> tuple[bool, str]:
        mine = [
            i
            for i in self.mig.instances()
            if i.version.instance_template.endswith(f"/{self.deployment.template}")
        ]
        good = sum(healthy(i) for i in mine)
        return (bool(mine) and good == len(mine)), f"{good}/{len(mine)} new instances healthy"

    def roll_back(self):
        previous = self.deployment.previous.get("template")
        if not previous:
            return self.rolled_back("nothing had changed on the MIG")
        if not self.step.pending_operation("rollback") and not self.patched("rollback"):
            self.mig.patch(
                "rollback",
                {
                    "versions": [{"name": "rollback", "instance_template": previous}],
                    "update_policy": self.update_policy(),
                },
            )
            return later()
        if not self.wait_op("rollback") or not self.mig.settled_on(previous):
            self.rollout_deadline(f"rolling {self.mig.name} back")
            return later()
        return self.rolled_back(f"{self.mig.name} back on {previous.rsplit('/', 1)[-1]}")
