"""The dev VM: every component runs on one instance, each from the image its metadata key
names (`<component>-image`). Changing the key makes the VM's agent restart that container;
resetting the VM would take all six components down, so Gantry never does."""

from .base import NOW, Strategy, later


class SingleVm(Strategy):
    @property
    def key(self) -> str:
        return self.component.image_metadata_key

    def where(self):
        return self.step.project, self.component.instance_zone, self.component.instance

    def current_image(self) -> str:
        return self.gcp.get_instance(*self.where()).metadata.get(self.key, "")

    def set_image(self, what: str, image: str):
        ref = self.gcp.set_metadata(
            *self.where(), {self.key: image}, request_id=self.step.request_id(what)
        )
        self.step.operation(ref, what)

    def roll_out(self):
        if "image" not in self.deployment.previous:
            self.step.save(previous={"image": self.current_image(), "key": self.key})
        if not self.done("metadata"):
            self.set_image("metadata", self.deployment.target_image)
            return later()
        if not self.wait_op("metadata"):
            return self.wait_for("the image metadata to be set")
        self.deployment.transition(
            self.deployment.S.VERIFYING, reason=f"{self.component.instance} {self.key} set"
        )
        return NOW

    def roll_back(self):
        previous = self.deployment.previous.get("image")
        if not previous:
            return self.rolled_back("nothing had changed on the VM")
        if not self.done("rollback"):
            self.set_image("rollback", previous)
            return later()
        if not self.wait_op("rollback"):
            self.rollout_deadline("restoring the image metadata")
            return later()
        return self.rolled_back(f"{self.key} back to {previous}")
