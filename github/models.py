"""What Gantry keeps of GitHub: webhook deliveries, the GitHub deployments and statuses owed to
GitHub, and custom deployment protection rules waiting for Gantry's verdict."""

from datetime import timedelta

from django.db import models
from django.utils import timezone

from audit.models import AuditEvent
from deployments.models import Deployment, Release
from environments.models import Environment


class WebhookDelivery(models.Model):
    """One call to the GitHub webhook, kept like GitHub's "Recent deliveries" list.

    Rejected calls (bad or missing signature) keep no payload and no claimed id in `guid`, so a
    forged call can never block the real delivery with the same id. A delivery that ended
    failed, invalid or ignored may come again with the same id (GitHub's Redeliver, Gantry's
    Retry): it is decided again and `attempts` counts the tries.
    """

    class Outcome(models.TextChoices):
        REJECTED = "rejected", "Rejected (signature)"
        INVALID = "invalid", "Invalid payload"
        IGNORED = "ignored", "Ignored"
        PONG = "pong", "Ping answered"
        ACCEPTED = "accepted", "Accepted, resolving images"
        RECORDED = "recorded", "Protection rule recorded"
        RELEASED = "released", "Release created"
        FAILED = "failed", "Failed"

    class Source(models.TextChoices):
        WEBHOOK = "webhook", "Webhook"
        CATCH_UP = "catch_up", "Catch-up"

    # Outcomes a redelivery may change: the call came, and nothing came of it.
    RETRYABLE = frozenset({Outcome.FAILED, Outcome.INVALID, Outcome.IGNORED})

    guid = models.CharField(max_length=64, null=True, blank=True, unique=True)
    claimed_guid = models.CharField(max_length=64, blank=True, help_text="id a rejected call sent")
    event = models.CharField(max_length=64, blank=True)
    action = models.CharField(max_length=64, blank=True)
    repository = models.CharField(max_length=140, blank=True)
    outcome = models.CharField(max_length=8, choices=Outcome.choices)
    detail = models.TextField(blank=True)
    payload = models.JSONField(null=True, blank=True)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    releases = models.ManyToManyField(Release, blank=True, related_name="deliveries")
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.WEBHOOK)
    run_id = models.BigIntegerField(
        null=True, blank=True, db_index=True, help_text="GitHub's workflow run id"
    )
    installation_id = models.BigIntegerField(
        null=True, blank=True, help_text="the GitHub App installation that sent it"
    )
    attempts = models.PositiveIntegerField(default=1, help_text="times it was sent or retried")
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    # Resolving an accepted delivery's images: tries so far, and when to look again (the
    # reconciler re-enqueues an accepted delivery whose next look is overdue).
    resolve_tries = models.PositiveSmallIntegerField(default=0)
    next_resolve_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        verbose_name_plural = "webhook deliveries"
        permissions = [("retry_webhookdelivery", "Can retry a failed or ignored delivery")]

    def __str__(self):
        return f"{self.guid or self.claimed_guid or '?'} {self.event} {self.outcome}"

    @property
    def accepted_at(self):
        """When this try of the delivery came (its first arrival, or its last redelivery)."""
        return self.last_attempt_at or self.received_at

    @property
    def can_retry(self) -> bool:
        return self.outcome in self.RETRYABLE and self.payload is not None

    def finish(self, outcome, detail=""):
        self.outcome, self.detail, self.next_resolve_at = outcome, detail, None
        self.save(update_fields=["outcome", "detail", "next_resolve_at"])

    def look_again(self, detail: str, delay: float) -> None:
        """Still accepted: note why, and when the resolver should look again."""
        self.detail = detail
        self.resolve_tries += 1
        self.next_resolve_at = timezone.now() + timedelta(seconds=delay)
        self.save(update_fields=["detail", "resolve_tries", "next_resolve_at"])

    def decided_again(self, fields: dict, remote_addr=None) -> None:
        """The same delivery came again (GitHub's Redeliver, Gantry's Retry) after it ended
        failed, invalid or ignored: take the new decision on this row, as one more attempt."""
        now = timezone.now()
        for name, value in fields.items():
            setattr(self, name, value)
        self.attempts += 1
        self.last_attempt_at = now
        self.resolve_tries = 0
        self.next_resolve_at = now if self.outcome == self.Outcome.ACCEPTED else None
        if remote_addr:
            self.remote_addr = remote_addr
        self.save()


class GitHubOutbox(models.Model):
    """Something owed to GitHub. A short lease lets one worker at a time send it (one UPDATE:
    atomic on every database; no transaction is held open across the network call)."""

    lease_until = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, help_text="GitHub's last refusal, if any")

    class Meta:
        abstract = True

    def claim(self, seconds: float) -> bool:
        now = timezone.now()
        free = models.Q(lease_until__isnull=True) | models.Q(lease_until__lt=now)
        until = now + timedelta(seconds=seconds)
        claimed = type(self).objects.filter(free, pk=self.pk).update(lease_until=until)
        if claimed:
            self.lease_until = until
        return bool(claimed)

    def renew(self, seconds: float) -> None:
        self.lease_until = timezone.now() + timedelta(seconds=seconds)
        type(self).objects.filter(pk=self.pk).update(lease_until=self.lease_until)

    def release(self) -> None:
        type(self).objects.filter(pk=self.pk).update(lease_until=None)
        self.lease_until = None

    def note_error(self, message: str) -> None:
        """Keep GitHub's last refusal for people to see ("" once it went through)."""
        self.last_error = message[:2000]
        type(self).objects.filter(pk=self.pk).update(last_error=self.last_error)


class GitHubDeployment(GitHubOutbox):
    """The GitHub deployment that mirrors one Gantry deployment, and the statuses owed to it.

    Statuses are written in the transaction of the state change they report (an outbox); the
    `report_to_github` task creates the GitHub deployment when first needed and posts what is
    owed, oldest first, so GitHub sees Gantry's states in order however late the task runs.
    """

    deployment = models.OneToOneField(Deployment, on_delete=models.CASCADE, related_name="github")
    repository = models.CharField(max_length=140, help_text="owner/name on GitHub")
    environment = models.CharField(max_length=100, help_text="GitHub environment name")
    github_id = models.BigIntegerField(null=True, blank=True, help_text="GitHub's deployment id")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "GitHub deployment"

    def __str__(self):
        return f"GitHub deployment {self.github_id or '(not created yet)'} of {self.deployment}"

    @classmethod
    def owe(cls, deployment, state, description):
        """Queue one status for `deployment`'s GitHub deployment (created on the way)."""
        link, _ = cls.objects.get_or_create(
            deployment=deployment,
            defaults={
                "repository": deployment.release.repository,
                "environment": deployment.component.environment.name,
            },
        )
        return link.statuses.create(
            state=state, gantry_state=deployment.state, description=description[:140]
        )

    def owed(self):
        return self.statuses.filter(posted_at__isnull=True).order_by("id")

    def installation_id(self) -> int | None:
        """The App installation GitHub sent the release's build through, if Gantry knows it:
        statuses go to the repository through that installation."""
        return (
            WebhookDelivery.objects.filter(
                releases=self.deployment.release_id, installation_id__isnull=False
            )
            .values_list("installation_id", flat=True)
            .first()
        )

    def created_on_github(self, github_id: int) -> None:
        self.github_id = github_id
        self.save(update_fields=["github_id"])
        AuditEvent.record(
            "github.deployment.create",
            obj=self.deployment,
            message=f"GitHub deployment {github_id} in {self.repository} ({self.environment})",
            data={"github_id": github_id, "repository": self.repository},
        )


class GitHubStatus(models.Model):
    """One deployment status owed to GitHub, then posted (posted_at, github_id)."""

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        IN_PROGRESS = "in_progress", "In progress"
        SUCCESS = "success", "Success"
        FAILURE = "failure", "Failure"
        ERROR = "error", "Error"
        INACTIVE = "inactive", "Inactive"

    link = models.ForeignKey(GitHubDeployment, on_delete=models.CASCADE, related_name="statuses")
    state = models.CharField(max_length=11, choices=State.choices)
    gantry_state = models.CharField(max_length=16, choices=Deployment.State.choices)
    description = models.CharField(max_length=140, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    posted_at = models.DateTimeField(null=True, blank=True)
    github_id = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        verbose_name = "GitHub deployment status"
        verbose_name_plural = "GitHub deployment statuses"

    def __str__(self):
        return f"{self.state} ({self.gantry_state}) for {self.link}"

    def posted(self, github_id: int | None) -> None:
        self.posted_at, self.github_id = timezone.now(), github_id
        self.save(update_fields=["posted_at", "github_id"])


class ProtectionRule(GitHubOutbox):
    """A GitHub `deployment_protection_rule` request: a workflow job bound for `environment` waits
    until Gantry approves or rejects the release of `repository`@`sha` there. The verdict is
    reached in Gantry (`decide`), then sent once to `callback_url` (`answered`)."""

    class Verdict(models.TextChoices):
        WAITING = "waiting", "Waiting for Gantry"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"

    delivery = models.OneToOneField(
        WebhookDelivery, on_delete=models.CASCADE, related_name="protection_rule"
    )
    repository = models.CharField(max_length=140)
    sha = models.CharField("commit", max_length=40)
    ref = models.CharField(max_length=255, blank=True)
    environment = models.ForeignKey(
        Environment, on_delete=models.PROTECT, related_name="protection_rules"
    )
    github_environment = models.CharField(max_length=255, help_text="the name GitHub sent")
    callback_url = models.URLField(max_length=500)
    github_deployment_id = models.BigIntegerField(null=True, blank=True)
    run_id = models.BigIntegerField(
        null=True, blank=True, help_text="the workflow run whose job waits (from the callback URL)"
    )
    installation_id = models.BigIntegerField(null=True, blank=True)
    problem = models.TextField(
        blank=True, help_text="why Gantry cannot settle it as things stand (shown, and reported)"
    )
    reported_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="when the problem was last sent to GitHub as a status report",
    )
    deployment = models.ForeignKey(
        Deployment,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="protection_rules",
        help_text="the Gantry deployment whose approval GitHub waits for",
    )
    verdict = models.CharField(max_length=8, choices=Verdict.choices, default=Verdict.WAITING)
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    decided_at = models.DateTimeField(null=True, blank=True)
    answered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["repository", "sha"])]

    def __str__(self):
        return f"protection rule {self.repository}@{self.sha[:7]} in {self.github_environment}"

    def link(self, deployment) -> None:
        if self.deployment_id == deployment.pk:
            return
        self.deployment = deployment
        self.save(update_fields=["deployment"])
        deployment.log(
            "step", f"GitHub waits for this decision (environment {self.github_environment})"
        )

    def decide(self, verdict, comment: str) -> bool:
        """Settle the answer GitHub will get. Once only: False if it was settled before."""
        verdict = self.Verdict(verdict)
        settled = ProtectionRule.objects.filter(pk=self.pk, verdict=self.Verdict.WAITING).update(
            verdict=verdict, comment=comment, decided_at=timezone.now()
        )
        if not settled:
            return False
        self.refresh_from_db()
        AuditEvent.record(
            f"github.protection_rule.{verdict}",
            obj=self,
            message=comment,
            data={"deployment": self.deployment_id, "environment": self.github_environment},
        )
        return True

    def answered(self) -> None:
        self.answered_at = timezone.now()
        self.last_error = ""
        self.save(update_fields=["answered_at", "last_error"])
        AuditEvent.record(
            "github.protection_rule.answered",
            obj=self,
            message=f"{self.verdict} sent to GitHub",
            data={"verdict": self.verdict, "environment": self.github_environment},
        )


class CatchUp(models.Model):
    """Where the catch-up of missed builds stands for one source: the App's hook deliveries
    ("app") or one repository's workflow runs ("repo:owner/name")."""

    source = models.CharField(max_length=150, unique=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_ok_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="the last run that read everything; the next looks back to it",
    )
    found = models.PositiveIntegerField(default=0, help_text="missed builds found, all runs")
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["source"]
        verbose_name = "GitHub catch-up"

    def __str__(self):
        return f"catch-up {self.source}"
