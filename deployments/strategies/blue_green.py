"""Blue-green: two MIGs behind one backend service. The idle colour is brought to the live size
on the new template; once every instance is healthy the backend service is pointed at it in one
patch. The old colour stays warm for `warm_seconds` (rollback is swapping back), then goes to 0.
"""

from django.conf import settings

from ..resources import short
from .base import NOW, Strategy, later
from .mig import MigTarget, ensure_template, healthy


class BlueGreen(Strategy):
    def group_of(self, name: str) -> str:
        return self.gcp.get_mig(self.step.project, self.step.region, name).instance_group

    def layout(self) -> dict:
        """Which colour serves, recorded once so every later step agrees on it."""
        previous = self.deployment.previous
        if "live" in previous:
            return previous
        serving = self.gcp.serving_groups(self.step.project, self.component.backend_service)
        colours = {"blue": self.component.blue_mig, "green": self.component.green_mig}
        groups = {colour: self.group_of(name) for colour, name in colours.items()}
        live = next((c for c, g in groups.items() if short(g) in serving), "blue")
        idle = "green" if live == "blue" else "blue"
        live_mig = MigTarget(self.step, colours[live]).get()
        layout = {
            "live": live,
            "idle": idle,
            "live_mig": colours[live],
            "idle_mig": colours[idle],
            "live_group": groups[live],
            "idle_group": groups[idle],
            "template": live_mig.versions[0].instance_template,
            "size": live_mig.target_size or self.component.size,
        }
        self.step.save(
            f"{live} ({colours[live]}) serves; {idle} ({colours[idle]}) takes the new image",
            previous=layout,
        )
        return layout

    def done(self, what: str) -> bool:
        return any(op["what"] == what for op in self.deployment.operations)

    def roll_out(self):
        layout = self.layout()
        idle = MigTarget(self.step, layout["idle_mig"])
        new_url = ensure_template(self.step, layout["template"])
        if new_url is None:
            self.rollout_deadline("creating the instance template")
            return later()
        for what, call in (
            (
                "idle-template",
                lambda: idle.patch(
                    "idle-template",
                    {
                        "versions": [
                            {"name": f"d{self.deployment.pk}", "instance_template": new_url}
                        ]
                    },
                ),
            ),
            ("idle-resize", lambda: idle.resize("idle-resize", layout["size"])),
        ):
            if not self.done(what):
                call()
                return later()
            if not self.wait_op(what):
                self.rollout_deadline(what)
                return later()
        if not self.done("swap"):
            if not idle.settled_on(new_url):
                self.rollout_deadline(f"{idle.name} coming up")
                return later()
            ok, line = self.idle_healthy(idle)
            if not ok:
                self.rollout_deadline(f"{idle.name} turning healthy ({line})")
                return later()
            ref = self.gcp.set_backend_groups(
                self.step.project, self.component.backend_service, [layout["idle_group"]]
            )
            self.step.operation(ref, "swap")
            return later()
        if not self.wait_op("swap"):
            self.rollout_deadline("moving the backend service")
            return later()
        self.deployment.transition(
            self.deployment.S.VERIFYING,
            reason=f"traffic moved to {layout['idle']} ({layout['idle_mig']})",
        )
        return NOW

    def idle_healthy(self, idle: MigTarget) -> tuple[bool, str]:
        instances = idle.instances()
        good = sum(healthy(i) for i in instances)
        return bool(instances) and good == len(instances), f"{good}/{len(instances)} healthy"

    def instances_healthy(self) -> tuple[bool, str]:
        return self.idle_healthy(MigTarget(self.step, self.layout()["idle_mig"]))

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
        if self.done("swap") and not self.done("swap-back"):
            ref = self.gcp.set_backend_groups(
                self.step.project, self.component.backend_service, [layout["live_group"]]
            )
            self.step.operation(ref, "swap-back")
            return later()
        if not self.wait_op("swap-back"):
            self.rollout_deadline("moving traffic back")
            return later()
        if self.done("idle-resize") and not self.done("idle-retire"):
            MigTarget(self.step, layout["idle_mig"]).resize("idle-retire", 0)
            return later()
        if not self.wait_op("idle-retire"):
            return later()
        return self.rolled_back(f"traffic back on {layout['live']} ({layout['live_mig']})")
