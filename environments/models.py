"""Topology: environments, their networks (VPCs) and the components that run in them.

Rows are normally written by `load_topology` from topology/nemo.yaml; the admin can edit them too,
and both paths go through `full_clean()`, so the rules below hold either way.
"""

import logging
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models, transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import Signal
from django.urls import reverse
from django.utils import timezone

from .canary import AnalysisConfig, analysis_config

slug_help = "lower-case name used in URLs, the topology file and GCP resource lookups"


# Sent once an environment's `readings_at` stamp is committed, with environment_id= and at=.
new_readings = Signal()
log = logging.getLogger(__name__)


class Environment(models.Model):
    name = models.SlugField(max_length=32, unique=True, help_text=slug_help)
    display_name = models.CharField(max_length=100, blank=True)
    position = models.PositiveSmallIntegerField(default=0, help_text="order on pages")
    gcp_project = models.CharField("GCP project", max_length=63)
    region = models.CharField(max_length=40)
    zones = models.JSONField(default=list, help_text="zones the environment runs in")
    registry = models.CharField(
        max_length=200, help_text="Artifact Registry path, e.g. REGION-docker.pkg.dev/PROJECT/REPO"
    )
    requires_approval = models.BooleanField(
        default=False, help_text="deploys wait for approval in the browser"
    )
    approvals_required = models.PositiveSmallIntegerField(default=0)
    branch = models.CharField(
        max_length=100, blank=True, help_text="git branch whose builds deploy here"
    )
    probe_interval = models.PositiveIntegerField(
        default=15, validators=[MinValueValidator(5)], help_text="seconds between probe sweeps"
    )
    probed_at = models.DateTimeField(null=True, blank=True, editable=False)
    readings_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="when a sweep or a collector last stored readings: what the dashboards key on",
    )

    class Meta:
        ordering = ["position", "name"]
        constraints = [
            models.CheckConstraint(
                name="approval_needs_approvers",
                condition=models.Q(requires_approval=False) | models.Q(approvals_required__gte=1),
                violation_error_message="An environment that requires approval needs at least "
                "one approval.",
            ),
        ]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("environment", args=[self.name])

    @classmethod
    def readings_stored(cls, environment_id: int, at=None, **fields) -> None:
        """Say that new readings of the environment were stored, so its dashboards are drawn
        again: the sweep, the Redis/LLM figures and the instance groups each call it. Once the
        stamp is committed, `new_readings` is sent (environment_id=, at=): the dashboards are
        drawn ahead there, by the process that stored them. `fields` are set in the same UPDATE."""
        at = at or timezone.now()
        cls.objects.filter(pk=environment_id).update(readings_at=at, **fields)
        transaction.on_commit(lambda: cls._announce_readings(environment_id, at))

    @classmethod
    def _announce_readings(cls, environment_id: int, at) -> None:
        """Drawing ahead is a saving, not a duty: a receiver that fails is logged, and the
        first request for the new version draws it instead."""
        for receiver, error in new_readings.send_robust(
            sender=cls, environment_id=environment_id, at=at
        ):
            if isinstance(error, Exception):
                log.error(
                    "%s failed on new readings of environment %s: %r",
                    receiver,
                    environment_id,
                    error,
                    exc_info=error,
                )

    @property
    def title(self):
        return self.display_name or self.name

    def networks_with_components(self):
        """(network, components) pairs from prefetched rows: no query per network on pages."""
        components = list(self.components.all())
        return [(n, [c for c in components if c.network_id == n.pk]) for n in self.networks.all()]

    def clean(self):
        if not isinstance(self.zones, list) or not all(isinstance(z, str) for z in self.zones):
            raise ValidationError({"zones": "zones must be a list of zone names"})
        if not self.zones:
            raise ValidationError({"zones": "an environment runs in at least one zone"})
        strays = [z for z in self.zones if not z.startswith(f"{self.region}-")]
        if self.region and strays:
            raise ValidationError({"zones": f"zones {strays} are not in region {self.region}"})


class Network(models.Model):
    """A VPC (for dev, the one host's network). Peers are networks of the same environment."""

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="networks")
    name = models.SlugField(max_length=32, help_text=slug_help)
    display_name = models.CharField(max_length=100, blank=True)
    position = models.PositiveSmallIntegerField(default=0, help_text="order on pages")
    vpc = models.CharField("VPC name", max_length=63)
    cidr = models.CharField("CIDR", max_length=43, blank=True)
    peers = models.ManyToManyField("self", blank=True, symmetrical=True)

    class Meta:
        ordering = ["environment__position", "position", "name"]
        constraints = [
            models.UniqueConstraint(fields=["environment", "name"], name="unique_network_name")
        ]

    def __str__(self):
        return f"{self.environment.name}/{self.name}"

    @property
    def title(self):
        return self.display_name or self.name


class Component(models.Model):
    """One part of the stack in one environment: how to reach and probe it, and how it deploys."""

    class Tier(models.TextChoices):
        FRONTEND = "frontend", "Frontend"
        BACKEND = "backend", "Backend"
        DATABASE = "database", "Database"
        CACHE = "cache", "Cache"
        AI = "ai", "AI"
        VECTOR_STORE = "vector_store", "Vector store"

    class ProbeKind(models.TextChoices):
        HTTP = "http", "HTTP"
        TCP = "tcp", "TCP connect"
        REDIS = "redis", "Redis PING"
        MYSQL = "mysql", "MySQL ping"
        CHROMA = "chroma", "Chroma heartbeat"

    class DeployKind(models.TextChoices):
        ROLLING_MIG = "rolling_mig", "Regional MIG (rolling or canary)"
        BLUE_GREEN = "blue_green", "Blue-green MIG pair"
        SINGLE_VM = "single_vm", "Single VM"
        NONE = "none", "Not deployed by Gantry"

    class Strategy(models.TextChoices):
        ROLLING = "rolling", "Rolling update"
        CANARY = "canary", "Canary"
        BLUE_GREEN = "blue_green", "Blue-green"
        RECREATE = "recreate", "Update and restart"

    environment = models.ForeignKey(
        Environment, on_delete=models.CASCADE, related_name="components"
    )
    network = models.ForeignKey(Network, on_delete=models.PROTECT, related_name="components")
    name = models.SlugField(max_length=40, help_text=slug_help)
    display_name = models.CharField(max_length=100, blank=True)
    position = models.PositiveSmallIntegerField(default=0, help_text="order on pages")
    tier = models.CharField(max_length=16, choices=Tier.choices)
    host = models.CharField(max_length=255, blank=True, help_text="address the probes use")
    port = models.PositiveIntegerField(validators=[MinValueValidator(1), MaxValueValidator(65535)])

    probe_kind = models.CharField(max_length=8, choices=ProbeKind.choices)
    probe_path = models.CharField(max_length=200, blank=True, help_text="HTTP path, e.g. /health")
    probe_expect_status = models.PositiveSmallIntegerField(default=200)
    probe_expect_json = models.JSONField(
        default=dict,
        blank=True,
        help_text='keys the JSON answer must contain, e.g. {"status": "UP"}',
    )

    deploy_kind = models.CharField(max_length=12, choices=DeployKind.choices)
    strategy = models.CharField(max_length=12, choices=Strategy.choices, blank=True)
    image = models.CharField(max_length=100, blank=True, help_text="image name in the registry")
    tag_template = models.CharField(
        max_length=100,
        default="{sha}",
        help_text="image tag CI pushes, e.g. {sha} or {branch}-{sha}",
    )
    machine_type = models.CharField(max_length=40, blank=True)
    size = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="instances in the MIG (per colour for blue-green)"
    )
    mig = models.CharField("MIG", max_length=63, blank=True)
    blue_mig = models.CharField("blue MIG", max_length=63, blank=True)
    green_mig = models.CharField("green MIG", max_length=63, blank=True)
    backend_service = models.CharField(max_length=63, blank=True)
    instance = models.CharField(max_length=63, blank=True, help_text="the VM, for single_vm")
    instance_zone = models.CharField(max_length=40, blank=True)
    options = models.JSONField(
        default=dict, blank=True, help_text="extra settings, e.g. queues or metrics_path"
    )

    class Meta:
        ordering = ["environment__position", "position", "name"]
        constraints = [
            models.UniqueConstraint(fields=["environment", "name"], name="unique_component_name"),
            models.CheckConstraint(
                name="component_port_range", condition=models.Q(port__gte=1, port__lte=65535)
            ),
        ]

    # Which fields each deploy kind needs, and which strategies it allows.
    DEPLOY_RULES = {
        DeployKind.ROLLING_MIG: (
            ("mig", "image", "size"),
            (Strategy.ROLLING, Strategy.CANARY),
        ),
        DeployKind.BLUE_GREEN: (
            ("blue_mig", "green_mig", "backend_service", "image", "size"),
            (Strategy.BLUE_GREEN,),
        ),
        DeployKind.SINGLE_VM: (("instance", "instance_zone", "image"), (Strategy.RECREATE,)),
        DeployKind.NONE: ((), ("",)),
    }
    DEFAULT_STRATEGY = {
        DeployKind.ROLLING_MIG: Strategy.ROLLING,
        DeployKind.BLUE_GREEN: Strategy.BLUE_GREEN,
        DeployKind.SINGLE_VM: Strategy.RECREATE,
        DeployKind.NONE: "",
    }

    def __str__(self):
        return f"{self.environment.name}/{self.name}"

    def get_absolute_url(self):
        return reverse("component", args=[self.environment.name, self.name])

    @property
    def title(self):
        return self.display_name or self.name

    @property
    def is_deployable(self):
        return self.deploy_kind != self.DeployKind.NONE

    @property
    def analysis(self) -> AnalysisConfig:
        """How its canaries are judged (`options.analysis`, checked when the topology loads)."""
        return analysis_config(self.options)

    @property
    def image_metadata_key(self):
        """The instance metadata key naming this component's image on a VM or template."""
        return self.options.get("metadata_key", f"{self.name}-image")

    @property
    def image_repository(self):
        """Full image path in the environment's registry, e.g. .../nemo-prod/registry/backend."""
        return f"{self.environment.registry}/{self.image}" if self.image else ""

    def clean(self):
        errors = {}
        foreign_network = (
            self.network_id
            and self.environment_id
            and self.network.environment_id != self.environment_id
        )
        if foreign_network:
            errors["network"] = (
                f"network {self.network} belongs to another environment than {self.environment}"
            )
        if self.probe_kind == self.ProbeKind.HTTP and not self.probe_path.startswith("/"):
            errors["probe_path"] = "an HTTP probe needs a path starting with /"
        if not isinstance(self.probe_expect_json, dict):
            errors["probe_expect_json"] = "expected JSON must be a mapping"
        if not isinstance(self.options, dict):
            errors["options"] = "options must be a mapping"
        else:
            try:
                analysis_config(self.options)
            except ValueError as exc:
                errors["options"] = f"analysis: {exc}"
        rules = self.DEPLOY_RULES.get(self.deploy_kind)
        if rules:
            needed, strategies = rules
            if not self.strategy:
                self.strategy = self.DEFAULT_STRATEGY[self.deploy_kind]
            for field in needed:
                if getattr(self, field) in ("", None):
                    errors[field] = f"required when deployed as {self.deploy_kind}"
            if self.strategy not in strategies:
                allowed = ", ".join(s or "(none)" for s in strategies)
                errors["strategy"] = f"{self.deploy_kind} allows: {allowed}"
            zones = self.environment.zones if self.environment_id else []
            if self.instance_zone and zones and self.instance_zone not in zones:
                errors["instance_zone"] = (
                    f"{self.instance_zone} is not one of {self.environment}'s zones"
                )
        if errors:
            raise ValidationError(errors)


def default_events() -> list[str]:
    return ["push"]


class Repository(models.Model):
    """A GitHub repository whose successful builds become releases of some components."""

    full_name = models.CharField(max_length=140, unique=True, help_text="owner/name")
    components = models.JSONField(default=list, help_text="component names it builds")
    workflows = models.JSONField(
        default=list, blank=True, help_text="workflow names that count; empty means any"
    )
    registry = models.CharField(max_length=200, help_text="where CI pushes the images it builds")
    events = models.JSONField(
        default=default_events,
        blank=True,
        help_text="the events whose runs count (push by default; never pull requests)",
    )

    # Events that run the repository's own branch code. Pull request events run code anyone
    # with a fork can write, so they can never deploy.
    ROUTABLE_EVENTS = (
        "push",
        "workflow_dispatch",
        "schedule",
        "repository_dispatch",
        "merge_group",
    )

    class Meta:
        ordering = ["full_name"]
        verbose_name_plural = "repositories"

    def __str__(self):
        return self.full_name

    def accepts_workflow(self, name: str) -> bool:
        return not self.workflows or name in self.workflows

    def accepts_event(self, event: str) -> bool:
        return event in (self.events or default_events())

    def clean(self):
        owner, _, name = self.full_name.partition("/")
        if not owner or not name or "/" in name:
            raise ValidationError({"full_name": "must be owner/name"})
        wrong = [e for e in self.events or [] if e not in self.ROUTABLE_EVENTS]
        if wrong:
            raise ValidationError(
                {"events": f"{', '.join(wrong)}: only {', '.join(self.ROUTABLE_EVENTS)} may deploy"}
            )


class Status(models.TextChoices):
    UP = "up", "Up"
    DEGRADED = "degraded", "Degraded"
    DOWN = "down", "Down"
    UNKNOWN = "unknown", "Unknown"


class ProbeSample(models.Model):
    """One probe result. Raw samples are kept GANTRY_SAMPLE_RETENTION hours, then rolled up."""

    component = models.ForeignKey(Component, on_delete=models.CASCADE, related_name="samples")
    at = models.DateTimeField(db_index=True)
    status = models.CharField(max_length=8, choices=Status.choices)
    latency_ms = models.FloatField(null=True, blank=True)
    detail = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-at"]
        indexes = [models.Index(fields=["component", "at"])]

    def __str__(self):
        return f"{self.component} {self.status} at {self.at:%H:%M:%S}"


class ProbeRollup(models.Model):
    """An hour of samples for one component, kept after the raw samples are pruned."""

    component = models.ForeignKey(Component, on_delete=models.CASCADE, related_name="rollups")
    hour = models.DateTimeField()
    samples = models.PositiveIntegerField()
    up = models.PositiveIntegerField()
    latency_avg_ms = models.FloatField(null=True, blank=True)
    latency_max_ms = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["-hour"]
        constraints = [
            models.UniqueConstraint(fields=["component", "hour"], name="one_rollup_per_hour")
        ]

    def __str__(self):
        return f"{self.component} {self.hour:%Y-%m-%d %H}:00 {self.up}/{self.samples} up"


class ComponentHealth(models.Model):
    """The reported status of a component, moved only after `GANTRY_STATUS_CONFIRMATIONS`
    results in a row agree, so one lost packet never raises an alarm.

    The row changes only when the verdict (or a pending change) does; the latest result itself
    is the sample stored at the environment's `probed_at`, so a steady sweep writes no rows here.
    """

    component = models.OneToOneField(Component, on_delete=models.CASCADE, related_name="health")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.UNKNOWN)
    since = models.DateTimeField(null=True, blank=True)
    candidate = models.CharField(max_length=8, choices=Status.choices, blank=True)
    candidate_count = models.PositiveSmallIntegerField(default=0)

    def __str__(self):
        return f"{self.component}: {self.status}"

    def observe(self, status, at, detail, confirmations):
        """Take one result. Returns (changed, event): whether the row must be saved, and a
        HealthEvent when the reported status changes."""
        before = (self.status, self.candidate, self.candidate_count)
        event = None
        if status == self.status:
            self.candidate, self.candidate_count = "", 0
        else:
            if status == self.candidate:
                self.candidate_count += 1
            else:
                self.candidate, self.candidate_count = status, 1
            first_verdict = self.status == Status.UNKNOWN and self.since is None
            if first_verdict or self.candidate_count >= confirmations:
                event = HealthEvent(
                    component=self.component,
                    at=at,
                    previous=self.status,
                    status=status,
                    detail=detail[:300],
                )
                self.status, self.since = status, at
                self.candidate, self.candidate_count = "", 0
        return before != (self.status, self.candidate, self.candidate_count), event


class HealthEvent(models.Model):
    """A confirmed change of a component's status (up → down, down → up, …)."""

    component = models.ForeignKey(Component, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(db_index=True)
    previous = models.CharField(max_length=8, choices=Status.choices)
    status = models.CharField(max_length=8, choices=Status.choices)
    detail = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self):
        return f"{self.component} {self.previous} → {self.status}"


class StatSample(models.Model):
    """Figures read from a component on a sweep: Redis INFO, LLM metrics, or MIG status.

    `data` keeps the raw counters (so the next sample can take differences) and the figures
    computed from them; `problems` lists what could not be read, for the panel to say so.
    """

    class Kind(models.TextChoices):
        REDIS = "redis", "Redis"
        LLM = "llm", "LLM server"
        MIG = "mig", "Instance groups"
        CLOUD = "cloud", "Cloud Monitoring"

    component = models.ForeignKey(Component, on_delete=models.CASCADE, related_name="stats")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    at = models.DateTimeField(db_index=True)
    ok = models.BooleanField(default=True)
    data = models.JSONField(default=dict)
    problems = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["component", "kind", "at"])]

    def __str__(self):
        return f"{self.component} {self.kind} at {self.at:%H:%M:%S}"


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MINUTES_PER_WEEK = 7 * 24 * 60
WEEKLY_TIME = re.compile(r"(?P<day>[a-z]{3})\s+(?P<hour>\d{1,2}):(?P<minute>\d{2})")


def minute_of_week(text: str) -> int:
    """'fri 18:00' -> minutes since Monday 00:00. Raises ValueError with the reason."""
    match = WEEKLY_TIME.fullmatch(text.strip().lower())
    if not match or match["day"] not in WEEKDAYS:
        raise ValueError(f"{text!r} is not a weekday and time like 'fri 18:00'")
    hour, minute = int(match["hour"]), int(match["minute"])
    if hour > 23 or minute > 59:
        raise ValueError(f"{text!r} is not a time of day")
    return WEEKDAYS.index(match["day"]) * 1440 + hour * 60 + minute


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: 'America' is a folder
        raise ValidationError({"timezone": f"{name!r} is not a known time zone"}) from None


class FreezeWindowQuerySet(models.QuerySet):
    def covering(self, environment, at=None):
        """The enabled windows of an environment in force at `at` (default: now)."""
        at = at or timezone.now()
        return [w for w in self.filter(environment=environment, enabled=True) if w.covers(at)]


class FreezeWindow(models.Model):
    """A time when an environment takes no deploys: weekly (Friday 18:00 to Monday 09:00 in
    Seoul time) or once (from one moment to another). Approvals go on; a deployment that is
    ready waits for the window to end unless an admin overrides the freeze with a reason."""

    environment = models.ForeignKey(
        Environment, on_delete=models.CASCADE, related_name="freeze_windows"
    )
    name = models.SlugField(max_length=40)
    reason = models.CharField(max_length=200, help_text="shown to people whose deploy waits")
    enabled = models.BooleanField(default=True)
    timezone = models.CharField(
        max_length=64, default="UTC", help_text="for weekly windows, e.g. Asia/Seoul"
    )
    weekly_from = models.CharField(max_length=9, blank=True, help_text="e.g. fri 18:00")
    weekly_to = models.CharField(max_length=9, blank=True, help_text="e.g. mon 09:00")
    starts_at = models.DateTimeField(null=True, blank=True, help_text="one-off freeze: start")
    ends_at = models.DateTimeField(null=True, blank=True, help_text="one-off freeze: end")
    from_topology = models.BooleanField(
        default=False, editable=False, help_text="kept in line with the topology file"
    )

    objects = FreezeWindowQuerySet.as_manager()

    class Meta:
        ordering = ["environment", "name"]
        constraints = [
            models.UniqueConstraint(fields=["environment", "name"], name="unique_freeze_name")
        ]

    def __str__(self):
        return f"{self.environment}/{self.name}"

    @property
    def is_weekly(self) -> bool:
        return bool(self.weekly_from)

    @property
    def schedule(self) -> str:
        if self.is_weekly:
            return f"every {self.weekly_from} to {self.weekly_to} ({self.timezone})"
        return f"{self.starts_at:%Y-%m-%d %H:%M} to {self.ends_at:%Y-%m-%d %H:%M} UTC"

    def clean(self):
        weekly = bool(self.weekly_from or self.weekly_to)
        once = self.starts_at is not None or self.ends_at is not None
        if weekly == once:
            raise ValidationError(
                "A freeze window is either weekly (from and to as 'fri 18:00') or once "
                "(starts at and ends at), not both or neither."
            )
        _zone(self.timezone)
        if weekly:
            for name in ("weekly_from", "weekly_to"):
                try:
                    minute_of_week(getattr(self, name))
                except ValueError as exc:
                    raise ValidationError({name: str(exc)}) from None
            if minute_of_week(self.weekly_from) == minute_of_week(self.weekly_to):
                raise ValidationError({"weekly_to": "a weekly freeze must end when it starts"})
        elif self.starts_at is None or self.ends_at is None or self.ends_at <= self.starts_at:
            raise ValidationError({"ends_at": "a one-off freeze needs a start and a later end"})

    def ends_after(self, at) -> datetime | None:
        """When the occurrence in force at `at` ends; None when the window is not in force."""
        if not self.is_weekly:
            if self.starts_at <= at < self.ends_at:
                return self.ends_at
            return None
        local = at.astimezone(_zone(self.timezone))
        now = local.weekday() * 1440 + local.hour * 60 + local.minute
        start, end = minute_of_week(self.weekly_from), minute_of_week(self.weekly_to)
        inside = start <= now < end if start < end else (now >= start or now < end)
        if not inside:
            return None
        minutes = (end - now) % MINUTES_PER_WEEK
        top_of_minute = local.replace(second=0, microsecond=0)
        return (top_of_minute + timedelta(minutes=minutes)).astimezone(UTC)

    def covers(self, at) -> bool:
        return self.ends_after(at) is not None


def freeze_in_force(environment, at=None):
    """(window, ends_at) for the freeze that holds deploys at `at` the longest, or None.
    Back-to-back or overlapping windows are followed to the moment none is in force."""
    at = at or timezone.now()
    windows = list(FreezeWindow.objects.filter(environment=environment, enabled=True))
    holding, until = None, at
    for _ in range(len(windows) + 1):
        ends = [(w.ends_after(until), w) for w in windows]
        ends = [(end, w) for end, w in ends if end is not None]
        if not ends:
            break
        end, window = max(ends, key=lambda pair: pair[0])
        if end <= until:
            break
        holding = holding or window
        until = end
    return (holding, until) if holding else None


def _topology_changed(sender, instance, raw=False, **kwargs):
    """An environment, network, component or freeze window written or deleted (the topology
    loader, the admin): its environment's dashboards are drawn again (`readings_at` names them,
    portal/polls.py). Environment.readings_stored is an UPDATE, which sends no signal."""
    if not raw:
        Environment.readings_stored(
            instance.pk if sender is Environment else instance.environment_id
        )


for _model in (Environment, Network, Component, FreezeWindow):
    for _signal in (post_save, post_delete):
        _signal.connect(
            _topology_changed, sender=_model, dispatch_uid=f"redraw-{_model.__name__}-{_signal}"
        )
