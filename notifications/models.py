"""Where notifications go (channels) and each message sent to one of them.

A channel's URL is a secret (Discord and Slack put the key in the path): it is stored, and
only ever shown, logged or audited as `masked_url`. Delivery errors are scrubbed of it before
they reach `last_error`, hold an answer's status and never its body, and are shown only to
those who may change channels.
"""

from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from audit.models import AuditEvent
from environments.models import Environment

from . import egress


class Event(models.TextChoices):
    APPROVAL_REQUESTED = "approval_requested", "Approval requested"
    DEPLOYMENT_SUCCEEDED = "deployment_succeeded", "Deployment succeeded"
    DEPLOYMENT_FAILED = "deployment_failed", "Deployment failed"
    DEPLOYMENT_ROLLED_BACK = "deployment_rolled_back", "Deployment rolled back"
    COMPONENT_DOWN = "component_down", "Component down"
    COMPONENT_RECOVERED = "component_recovered", "Component recovered"


webhook_url = URLValidator(
    schemes=["https", "http"], message="Enter an http(s) URL.", code="scheme"
)


def all_events():
    return list(Event.values)


def mask_url(url: str) -> str:
    """scheme://host[:port]/**** — enough to tell channels apart, never the key."""
    parts = urlsplit(url or "")
    if not parts.scheme or not parts.netloc:
        return "****" if url else ""
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    rest = parts.path.strip("/") or parts.query or parts.fragment
    return f"{parts.scheme}://{host}/****" if rest else f"{parts.scheme}://{host}/"


class Channel(models.Model):
    """An incoming webhook of one environment: Discord, Slack, or any JSON receiver."""

    class Kind(models.TextChoices):
        DISCORD = "discord", "Discord webhook"
        SLACK = "slack", "Slack incoming webhook"
        WEBHOOK = "webhook", "Generic JSON webhook"

    environment = models.ForeignKey(
        Environment, on_delete=models.CASCADE, related_name="notification_channels"
    )
    name = models.CharField(max_length=60)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    url = models.URLField(
        "URL",
        max_length=500,
        validators=[webhook_url],
        help_text="the webhook URL; a secret, shown masked everywhere",
    )
    events = models.JSONField(default=all_events, help_text="event kinds this channel receives")
    enabled = models.BooleanField(default=True)

    # Health, kept by the delivery task: any failed attempt counts, any success resets it.
    consecutive_failures = models.PositiveIntegerField(default=0, editable=False)
    last_success_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_failure_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["environment__position", "environment__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["environment", "name"], name="unique_channel_name")
        ]

    def __str__(self):
        return f"{self.environment.name}/{self.name}"

    @property
    def masked_url(self):
        return mask_url(self.url)

    @property
    def failing(self):
        return self.consecutive_failures >= settings.GANTRY_NOTIFY_FAILING_AFTER

    def wants(self, event) -> bool:
        return self.enabled and event in self.events

    def get_events_display(self):
        labels = dict(Event.choices)
        return ", ".join(labels.get(e, e) for e in self.events)

    def scrub(self, text: str) -> str:
        """`text` with the URL, its path and its query replaced by the masked URL."""
        parts = urlsplit(self.url)
        for secret in (self.url, parts.path, parts.query, parts.password):
            if secret and len(secret) > 1:
                text = text.replace(secret, self.masked_url)
        return text

    def clean(self):
        """Events must be known kinds, and the URL one a channel may reach (egress.check: https
        to public hosts unless GANTRY_NOTIFY_ALLOWED_NETWORKS says otherwise); a URL that is
        not one at all is left to the field's own message."""
        errors = {}
        if not isinstance(self.events, list) or not all(isinstance(e, str) for e in self.events):
            errors["events"] = "events must be a list of event kinds"
        elif unknown := sorted(set(self.events) - set(Event.values)):
            errors["events"] = f"unknown event kinds: {', '.join(unknown)}"
        elif not self.events:
            errors["events"] = "choose at least one event, or disable the channel"
        try:
            webhook_url(self.url)
        except ValidationError:
            pass
        else:
            try:
                egress.check(self.url)
            except (egress.Refused, egress.Unresolved) as exc:
                errors["url"] = str(exc)
        if errors:
            raise ValidationError(errors)

    def record_success(self):
        """A message got through: the channel is healthy again."""
        was_failing = self.failing
        now = timezone.now()
        Channel.objects.filter(pk=self.pk).update(consecutive_failures=0, last_success_at=now)
        self.consecutive_failures, self.last_success_at = 0, now
        if was_failing:
            AuditEvent.record("channel.recovered", obj=self, data={"url": self.masked_url})

    def record_failure(self):
        """A delivery attempt failed. Crossing GANTRY_NOTIFY_FAILING_AFTER marks it failing; new
        messages are still tried, so it recovers on its own. The audit row, which every viewer
        reads, says how many and not why: the why is for those who manage channels."""
        now = timezone.now()
        Channel.objects.filter(pk=self.pk).update(
            consecutive_failures=F("consecutive_failures") + 1, last_failure_at=now
        )
        self.refresh_from_db(fields=["consecutive_failures", "last_failure_at"])
        if self.consecutive_failures == settings.GANTRY_NOTIFY_FAILING_AFTER:
            AuditEvent.record(
                "channel.failing",
                obj=self,
                message=f"{self.consecutive_failures} failed attempts in a row",
                data={"url": self.masked_url},
            )


class NotificationQuerySet(models.QuerySet):
    def stale(self, grace_seconds, now=None):
        """Pending messages whose delivery is overdue and not in anyone's hands: a message lost
        on the broker, or a worker that died mid-send."""
        now = now or timezone.now()
        return self.filter(
            Q(lease_until__isnull=True) | Q(lease_until__lt=now),
            state=Notification.State.PENDING,
            next_attempt_at__lt=now - timedelta(seconds=grace_seconds),
        )


class Notification(models.Model):
    """One message about one event to one channel, with what happened when it was sent."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="notifications")
    event = models.CharField(max_length=24, choices=Event.choices)
    source = models.CharField(
        max_length=120, help_text="what caused it, e.g. deployment:12:succeeded; one per channel"
    )
    subject = models.CharField(max_length=200)
    link = models.CharField(max_length=400, help_text="the Gantry page, absolute when it can be")
    status = models.CharField(max_length=24, help_text="the subject's state, e.g. failed, down")
    message = models.TextField()
    payload = models.JSONField(help_text="the JSON body, rendered for the channel's kind")

    state = models.CharField(max_length=8, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    lease_until = models.DateTimeField(null=True, blank=True)

    objects = NotificationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["state", "next_attempt_at"])]
        constraints = [
            models.UniqueConstraint(fields=["channel", "source"], name="one_notification_per_cause")
        ]

    def __str__(self):
        return f"{self.get_event_display()}: {self.subject} → {self.channel}"

    @property
    def badge(self):
        """The CSS state class that colours this state on pages."""
        return {"sent": "succeeded", "failed": "failed"}.get(self.state, "queued")

    def claim(self, lease_seconds) -> bool:
        """Take this pending message for one attempt. False when it is done, or another worker
        holds it: the conditional update makes two workers never send it at once."""
        now = timezone.now()
        taken = (
            Notification.objects.filter(pk=self.pk, state=self.State.PENDING)
            .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
            .update(lease_until=now + timedelta(seconds=lease_seconds), attempts=F("attempts") + 1)
        )
        self.refresh_from_db(fields=["state", "attempts", "lease_until"])
        return bool(taken)

    def mark_sent(self):
        self.state, self.sent_at, self.lease_until = self.State.SENT, timezone.now(), None
        self.last_error = ""
        self.save(update_fields=["state", "sent_at", "lease_until", "last_error"])

    def mark_failed(self, error):
        self.state, self.lease_until = self.State.FAILED, None
        self.last_error = self.channel.scrub(error)[:500]
        self.save(update_fields=["state", "lease_until", "last_error"])

    def retry_later(self, error, delay):
        self.lease_until = None
        self.last_error = self.channel.scrub(error)[:500]
        self.next_attempt_at = timezone.now() + timedelta(seconds=delay)
        self.save(update_fields=["lease_until", "last_error", "next_attempt_at"])
