"""Rolling update of one regional MIG: new template, then replace instances zone by zone.

The policy the team used: surge new instances first and never take one away before its
replacement serves (maxSurge 2, maxUnavailable 0; GCP wants a regional group's fixed surge to be
0 or at least its number of zones).
"""

from gcp.names import short

from .base import NOW, Strategy, later
from .mig import MigTarget, check_new_instances, ensure_template


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
            "most_disruptive_allowed_action": "REPLACE",
            "replacement_method": "SUBSTITUTE",
            "max_surge": {"fixed": surge},
            "max_unavailable": {"fixed": unavailable},
        }

    def remember_previous(self) -> bool:
        """Record what the group runs before anything changes; True the first time."""
        if self.deployment.previous.get("template"):
            return False
        mig = self.mig.get()
        previous = mig.stable_template
        self.step.save(
            f"{self.mig.name} runs {short(previous)} now",
            previous={
                **self.deployment.previous,
                "template": previous,
                "size": mig.target_size,
                "group": mig.group,
            },
        )
        return True

    def versions(self, new_url: str) -> list[dict]:
        return [{"name": f"d{self.deployment.pk}", "instance_template": new_url}]

    def roll_out(self):
        if self.remember_previous():
            return NOW
        previous = self.deployment.previous["template"]
        new_url = ensure_template(self.step, previous)
        if new_url is None:
            return self.wait_for("the new instance template")
        phase = self.deployment.progress.get("phase", "update")
        what = f"patch-{phase}"
        if not self.done(what):
            self.mig.patch(
                what, {"versions": self.versions(new_url), "update_policy": self.update_policy()}
            )
            return later()
        if not self.wait_op(what):
            return self.wait_for(f"the {self.mig.name} patch")
        if not self.mig.settled_on(self.settled_template(new_url), new_template=new_url):
            self.rollout_deadline(f"{self.mig.name} rolling update")
            return self.mig.next_poll()
        self.deployment.transition(
            self.deployment.S.VERIFYING,
            reason=f"{self.mig.name} stable on {self.deployment.template}",
        )
        return NOW

    def settled_template(self, new_url: str) -> str | None:
        return new_url

    def lb_health(self):
        """The load balancer's view of the group, when a backend service fronts it."""
        service = self.component.backend_service
        group = self.deployment.previous.get("group")
        if not service or not group:
            return None
        return self.gcp.backend_health(self.step.project, service, groups=[group])

    def instances_healthy(self) -> tuple[bool, str]:
        new = self.new_template()
        instances = self.mig.instances()
        lb = self.lb_health()
        check_new_instances(self.step, instances, new, lb)
        mine = [i for i in instances if i.runs(new)]
        good = [i for i in mine if i.healthy]
        line = f"{len(good)}/{len(mine)} new instances healthy"
        if lb is not None:
            serving = {h.instance for h in lb if h.state == "HEALTHY"}
            good = [i for i in good if i.url in serving]
            line += f", {len(good)}/{len(mine)} healthy in the load balancer"
        return (bool(mine) and len(good) == len(mine)), line

    def roll_back(self):
        previous = self.deployment.previous.get("template")
        if not previous:
            return self.rolled_back("nothing had changed on the MIG")
        if not self.done("rollback"):
            self.mig.patch(
                "rollback",
                {
                    "versions": [{"name": "rollback", "instance_template": previous}],
                    "update_policy": self.update_policy(),
                },
            )
            return later()
        if not self.wait_op("rollback"):
            return self.wait_for(f"the {self.mig.name} rollback patch")
        if not self.mig.settled_on(previous):
            self.rollout_deadline(f"rolling {self.mig.name} back")
            return self.mig.next_poll()
        return self.rolled_back(f"{self.mig.name} back on {short(previous)}")
