"""What the adapter hands up: plain, frozen values, so strategies and dashboards read GCP's state
without protobuf messages or client-library types."""

from __future__ import annotations

from dataclasses import dataclass, field

from .names import short, zone_of


@dataclass(frozen=True)
class OperationRef:
    """Where a Compute operation lives; `str()` is what a deployment records to poll it later."""

    project: str
    scope: str  # "global", "regions/<region>" or "zones/<zone>"
    name: str

    def __str__(self) -> str:
        return f"projects/{self.project}/{self.scope}/operations/{self.name}"

    @classmethod
    def parse(cls, text: str) -> OperationRef:
        """From `str(ref)` or an operation's selfLink."""
        path = text.split("/compute/v1/", 1)[-1]
        parts = path.split("/")
        try:
            project = parts[parts.index("projects") + 1]
            name = parts[parts.index("operations") + 1]
        except (ValueError, IndexError):
            raise ValueError(f"not an operation reference: {text!r}") from None
        scope = "global" if "global" in parts else "/".join(parts[2:4])
        return cls(project, scope, name)


@dataclass(frozen=True)
class OperationState:
    ref: OperationRef
    operation_type: str
    done: bool
    errors: tuple[tuple[str, str], ...] = ()
    http_status: int | None = None


@dataclass(frozen=True)
class ImageName:
    """host/repository[:tag][@digest]: the repository is the path the registry API serves."""

    host: str
    repository: str
    tag: str = ""
    digest: str = ""

    @classmethod
    def parse(cls, text: str) -> ImageName:
        rest, _, digest = text.partition("@")
        tag = ""
        if ":" in rest.rsplit("/", 1)[-1]:
            rest, tag = rest.rsplit(":", 1)
        host, _, repository = rest.partition("/")
        if not repository or ("." not in host and ":" not in host and host != "localhost"):
            raise ValueError(f"image {text!r} must start with a registry host")
        return cls(host, repository, tag, digest)

    @property
    def reference(self) -> str:
        return self.digest or self.tag or "latest"


@dataclass(frozen=True)
class MigVersion:
    name: str
    template: str  # the instance template's URL
    target: int | None = None  # instances GCP calculated for a sized version; None: the rest


@dataclass(frozen=True)
class MigStatus:
    """A regional managed instance group as the engine and the panels need it."""

    name: str
    group: str  # the instance group's URL (what a backend service points at)
    target_size: int
    stable: bool
    reached: bool  # status.versionTarget.isReached
    versions: tuple[MigVersion, ...]
    autoscaler: str = ""  # the attached autoscaler's URL, '' for none

    @property
    def stable_template(self) -> str:
        """The template of the version without a target size (the one the rest run)."""
        rest = [v for v in self.versions if v.target is None] or list(self.versions)
        return rest[0].template if rest else ""


@dataclass(frozen=True)
class InstanceError:
    """One of a managed instance's `lastAttempt.errors`: why GCP could not create it."""

    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass(frozen=True)
class ManagedInstance:
    url: str
    status: str  # instanceStatus; '' while GCP has not created the VM yet
    action: str  # currentAction
    template: str  # the template URL of the version it runs
    version: str = ""
    health: tuple[str, ...] = ()  # detailedHealthState per autohealing health check
    errors: tuple[InstanceError, ...] = ()  # lastAttempt.errors

    @property
    def name(self) -> str:
        return short(self.url)

    @property
    def zone(self) -> str:
        return zone_of(self.url)

    @property
    def healthy(self) -> bool:
        """RUNNING, with nothing to do, and every autohealing check it has says HEALTHY."""
        if self.status != "RUNNING" or self.action != "NONE":
            return False
        return all(state == "HEALTHY" for state in self.health)

    def runs(self, template: str) -> bool:
        """Whether it runs `template` (a URL or a bare name)."""
        return short(self.template) == short(template)


@dataclass(frozen=True)
class BackendHealth:
    """The load balancer's view of one instance (`backendServices.getHealth`)."""

    group: str  # the instance group's URL
    instance: str  # the instance's URL
    state: str  # HEALTHY, UNHEALTHY, DRAINING, TIMEOUT, UNKNOWN


@dataclass(frozen=True)
class Vm:
    name: str
    zone: str
    status: str
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Autoscaler:
    name: str
    min: int
    max: int
    recommended: int
    status: str
    cpu_target: float | None = None  # cpuUtilization.utilizationTarget (0..1), if it scales on CPU


@dataclass(frozen=True)
class BuildState:
    id: str
    status: str  # QUEUED, PENDING, WORKING, SUCCESS, FAILURE, …
    detail: str = ""
    log_url: str = ""

    @property
    def finished(self) -> bool:
        return self.status not in ("QUEUED", "PENDING", "WORKING", "STATUS_UNKNOWN")
