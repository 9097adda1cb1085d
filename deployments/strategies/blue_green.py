"""Blue-green: two MIGs behind one backend service. The idle colour is brought to the live size
on the new template and attached to the backend service as a standby (capacity 0: health-checked
by the load balancer, sent no traffic). Once the load balancer reports every new instance
HEALTHY, one patch makes it the only backend, with the settings of the backend it replaces. The
old colour stays warm for `warm_seconds` (rollback is swapping back), then goes to 0.
"""

from django.conf import settings

from gcp.names import short

from .base import NOW, Strategy, later
from .mig import MigTarget, check_new_instances, ensure_template


class BlueGreen(Strategy):
    def layout(self) -> dict:
        """Which colour serves, recorded once so every later step agrees on it."""
        previous = self.deployment.previous
        if "live" in previous:
            return previous
        serving = self.gcp.serving_groups(self.step.project, self.component.backend_service)
        names = {"blue": self.component.blue_mig, "green": self.component.green_mig}
        migs = {colour: MigTarget(self.step, name).get() for colour, name in names.items()}
        live = next((c for c, m in migs.items() if short(m.group) in serving), "blue")
        idle = "green" if live == "blue" else "blue"
        layout = {
            "live": live,
            "idle": idle,
            "live_mig": names[live],
            "idle_mig": names[idle],
            "live_group": migs[live].group,
            "idle_group": migs[idle].group,
            "template": migs[live].stable_template,
            "size": migs[live].target_size or self.component.size,
        }
        self.step.save(
            f"{live} ({names[live]}) serves; {idle} ({names[idle]}) takes the new image",
            previous=layout,
        )
        return layout

    def backends(self, what: str, call, group: str, like: str) -> None:
        ref = call(
            self.step.project,
            self.component.backend_service,
            group,
            like=like,
            request_id=self.step.request_id(what),
        )
        self.step.operation(ref, what)

    def roll_out(self):
        if "live" not in self.deployment.previous:
            self.layout()
            return NOW
        layout = self.layout()
        idle = MigTarget(self.step, layout["idle_mig"])
        new_url = ensure_template(self.step, layout["template"])
        if new_url is None:
            return self.wait_for("the new instance template")
        if not self.done("idle-template"):
            version = {"name": f"d{self.deployment.pk}", "instance_template": new_url}
            idle.patch("idle-template", {"versions": [version]})
            return later()
        if not self.wait_op("idle-template"):
            return self.wait_for(f"the {idle.name} patch")
        if not self.done("idle-resize"):
            idle.resize("idle-resize", layout["size"])
            return later()
        if not self.wait_op("idle-resize"):
            return self.wait_for(f"the {idle.name} resize")
        if not self.done("attach"):
            if not self.noted(
                "idle_settled", lambda: idle.settled_on(new_url, new_template=new_url)
            ):
                self.rollout_deadline(f"{idle.name} coming up")
                return idle.next_poll()
            self.backends(
                "attach", self.gcp.attach_backend, layout["idle_group"], layout["live_group"]
            )
            return later()
        if not self.wait_op("attach"):
            return self.wait_for("attaching the standby backend")
        if not self.done("swap"):
            if not self.noted("idle_healthy", lambda: self.healthy_or_wait(layout)):
                return later()
            self.backends("swap", self.gcp.serve_only, layout["idle_group"], layout["live_group"])
            return later()
        if not self.wait_op("swap"):
            return self.wait_for("moving the backend service")
        self.deployment.transition(
            self.deployment.S.VERIFYING,
            reason=f"traffic moved to {layout['idle']} ({layout['idle_mig']})",
        )
        return NOW

    def noted(self, flag: str, check) -> bool:
        """True once `check()` has passed, noted on the row. The check and the call it guards
        then run in separate steps, so no step makes more than three Compute calls (a throttled
        call costs one step, never the same step again and again)."""
        if self.deployment.progress.get(flag):
            return True
        if check():
            self.step.save(progress={**self.deployment.progress, flag: True})
        return False

    def healthy_or_wait(self, layout: dict) -> bool:
        ok, line = self.idle_healthy(layout)
        if not ok:
            self.wait_for(f"{layout['idle_mig']} healthy in the load balancer ({line})")
        return ok

    def idle_healthy(self, layout: dict) -> tuple[bool, str]:
        """Every instance of the new colour RUNNING in its group and HEALTHY in the load
        balancer's view; an instance that stays unhealthy fails the step."""
        idle = MigTarget(self.step, layout["idle_mig"])
        instances = idle.instances()
        lb = self.gcp.backend_health(
            self.step.project, self.component.backend_service, groups=[layout["idle_group"]]
        )
        new = self.new_template()
        check_new_instances(self.step, instances, new, lb)
        serving = {h.instance for h in lb if h.state == "HEALTHY"}
        good = [i for i in instances if i.status == "RUNNING" and i.url in serving]
        line = f"{len(good)}/{len(instances)} healthy in the load balancer"
        return bool(instances) and len(good) == len(instances), line

    def instances_healthy(self) -> tuple[bool, str]:
        return self.idle_healthy(self.layout())

    def verified(self):
        """Keep the old colour warm, then scale it to zero and finish."""
        layout = self.layout()
        warm = self.step.option("warm_seconds", settings.GANTRY_WARM_SECONDS)
        left = warm - self.step.seconds_in_state()
        if left > 0 and not self.done("retire-old"):
            if not self.deployment.progress.get("warm"):
                self.step.save(
                    f"keeping {layout['live']} warm for {warm:g}s",
                    progress={**self.deployment.progress, "warm": True},
                )
            return later(min(left, 30.0))
        old = MigTarget(self.step, layout["live_mig"])
        if not self.done("retire-old"):
            old.resize("retire-old", 0)
            return later()
        if not self.wait_op("retire-old"):
            return later()
        return super().verified()

    def roll_back(self):
        if "live" not in self.deployment.previous:
            return self.rolled_back("nothing had changed")
        layout = self.layout()
        if self.done("attach") and not self.done("swap-back"):
            # After a swap the new backend carries the old one's settings; before, the old one
            # still has its own.
            like = layout["idle_group"] if self.done("swap") else layout["live_group"]
            self.backends("swap-back", self.gcp.serve_only, layout["live_group"], like)
            return later()
        if not self.wait_op("swap-back"):
            return self.wait_for("moving traffic back")
        if self.done("idle-resize") and not self.done("idle-retire"):
            MigTarget(self.step, layout["idle_mig"]).resize("idle-retire", 0)
            return later()
        if not self.wait_op("idle-retire"):
            return later()
        return self.rolled_back(f"traffic back on {layout['live']} ({layout['live_mig']})")
