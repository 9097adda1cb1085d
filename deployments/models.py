"""Releases, deployments, approvals and each deployment's timeline.

A Deployment is a row with a state machine. Every change of state goes through
`Deployment.transition()`, which validates the move, stamps the time, appends a timeline event
and writes an audit event, all in the caller's transaction.
"""

from django.conf import settings
from django.db import models, transaction
from django.db.models import Prefetch
from django.db.models.signals import post_save
from django.dispatch import Signal, receiver
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from environments.models import Component
from portal.models import normalize_login

from . import clock

# Sent inside the transaction of every state change (`transition`) and of a deployment's creation
# (before=None), with deployment=, before=, to=. Receivers may only write rows and enqueue work on
# commit: the GitHub app's statuses and protection rules hang off it.
state_changed = Signal()


class Release(models.Model):
    """One build of one component's image, bound for the environment its branch maps to."""

    class Source(models.TextChoices):
        WEBHOOK = "webhook", "GitHub webhook"
        API = "api", "Release API"
        MANUAL = "manual", "Manual"

    component = models.ForeignKey(Component, on_delete=models.PROTECT, related_name="releases")
    repository = models.CharField(max_length=140, help_text="owner/name on GitHub")
    branch = models.CharField(max_length=100)
    sha = models.CharField("commit", max_length=40)
    version = models.CharField(max_length=64, blank=True, help_text="e.g. v42 or the run number")
    title = models.CharField(max_length=200, blank=True, help_text="first line of the commit")
    author = models.CharField(max_length=100, blank=True, help_text="GitHub actor of the build")
    triggering_actor = models.CharField(
        max_length=100,
        blank=True,
        help_text="GitHub user who started this run (a re-run's may not be the actor)",
    )
    committed_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="the commit's time, as GitHub gives it; lead time counts from it",
    )
    run_url = models.URLField(max_length=300, blank=True)
    image = models.CharField(max_length=300, help_text="image as built, e.g. REGISTRY/NAME:TAG")
    digest = models.CharField(max_length=71, help_text="sha256:… the release pins")
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.MANUAL)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["repository", "sha", "component"], name="unique_release_per_build"
            ),
        ]

    def __str__(self):
        return f"{self.component} {self.version or self.sha[:7]}"

    def get_absolute_url(self):
        return reverse("release", args=[self.pk])

    def compare_url(self, other) -> str:
        """GitHub's compare page from another release's commit to this one's."""
        if not other or other.repository != self.repository or other.sha == self.sha:
            return ""
        return f"https://github.com/{self.repository}/compare/{other.sha}...{self.sha}"

    @property
    def short_sha(self):
        return self.sha[:7]

    @property
    def commit_url(self) -> str:
        return f"https://github.com/{self.repository}/commit/{self.sha}"

    @property
    def github_actors(self) -> set[str]:
        """The GitHub users who set this build going, normalised: none of them may approve it."""
        return {normalize_login(a) for a in (self.author, self.triggering_actor)} - {""}

    @property
    def from_github(self) -> bool:
        """A GitHub run made it, so an approver must be told apart from its actors by login."""
        return bool(self.github_actors) or self.source == self.Source.WEBHOOK

    @property
    def image_by_digest(self):
        """The built image pinned by digest, e.g. REGISTRY/NAME@sha256:…"""
        return f"{self.image.rsplit('@', 1)[0].rsplit(':', 1)[0]}@{self.digest}"


class DeploymentQuerySet(models.QuerySet):
    def active(self):
        return self.filter(state__in=Deployment.ACTIVE)

    def unfinished(self):
        return self.exclude(state__in=Deployment.FINAL)

    def running_on(self, component):
        """The deployment whose image runs on the component now: the latest that succeeded.
        A rolled-back deployment restored what ran before it, so it never counts."""
        return (
            self.filter(component=component, state=Deployment.S.SUCCEEDED)
            .select_related("release")
            .order_by("-finished_at", "-id")
            .first()
        )

    def history(self, component):
        """A component's deployments, newest first, with what its history rows show (release,
        approvers) in a fixed number of queries however many there are."""
        approved = Approval.objects.filter(decision=Approval.Decision.APPROVE)
        return (
            self.filter(component=component)
            .select_related("release")
            .prefetch_related(Prefetch("approvals", queryset=approved.select_related("user")))
            .order_by("-created_at", "-id")
        )


class Deployment(models.Model):
    """A release's image going to its component: promote, roll out, verify, maybe roll back."""

    class State(models.TextChoices):
        PENDING_APPROVAL = "pending_approval", "Waiting for approval"
        QUEUED = "queued", "Queued"
        PROMOTING = "promoting", "Promoting image"
        ROLLING_OUT = "rolling_out", "Rolling out"
        VERIFYING = "verifying", "Verifying"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        ROLLING_BACK = "rolling_back", "Rolling back"
        ROLLED_BACK = "rolled_back", "Rolled back"
        CANCELLED = "cancelled", "Cancelled"
        SUPERSEDED = "superseded", "Superseded"
        REJECTED = "rejected", "Rejected"

    S = State
    # States that own the component: at most one deployment per component is in one of these.
    ACTIVE = frozenset({S.PROMOTING, S.ROLLING_OUT, S.VERIFYING, S.ROLLING_BACK})
    WAITING = frozenset({S.PENDING_APPROVAL, S.QUEUED})
    FINAL = frozenset({S.SUCCEEDED, S.FAILED, S.ROLLED_BACK, S.CANCELLED, S.SUPERSEDED, S.REJECTED})
    TRANSITIONS = {
        S.PENDING_APPROVAL: {S.QUEUED, S.REJECTED, S.SUPERSEDED, S.CANCELLED},
        S.QUEUED: {S.PROMOTING, S.SUPERSEDED, S.CANCELLED},
        S.PROMOTING: {S.ROLLING_OUT, S.FAILED, S.CANCELLED},
        S.ROLLING_OUT: {S.VERIFYING, S.ROLLING_BACK, S.FAILED},
        # Back to rolling out: a canary that passed its observation goes to 100%.
        S.VERIFYING: {S.SUCCEEDED, S.ROLLING_OUT, S.ROLLING_BACK, S.FAILED},
        S.ROLLING_BACK: {S.ROLLED_BACK, S.FAILED},
        S.SUCCEEDED: {S.ROLLING_BACK},
        S.FAILED: set(),
        S.ROLLED_BACK: set(),
        S.CANCELLED: set(),
        S.SUPERSEDED: set(),
        S.REJECTED: set(),
    }

    release = models.ForeignKey(Release, on_delete=models.PROTECT, related_name="deployments")
    component = models.ForeignKey(Component, on_delete=models.PROTECT, related_name="deployments")
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    strategy = models.CharField(max_length=12, choices=Component.Strategy.choices)
    reason = models.TextField(blank=True, help_text="why it is in this state, for people")
    requested_by = models.CharField(max_length=150, blank=True)
    approvals_required = models.PositiveSmallIntegerField(default=0)
    cancel_requested = models.BooleanField(default=False)
    freeze_override_by = models.CharField(max_length=150, blank=True)
    freeze_override_reason = models.TextField(blank=True)
    # What people asked of a running rollout. Only their actions write these, and the engine only
    # reads them, so a step that saves never undoes a request made while it ran.
    cancel_reason = models.TextField(blank=True, help_text="why a person stopped it")
    paused_by = models.CharField(max_length=150, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    resumed_at = models.DateTimeField(
        null=True, blank=True, help_text="the state's deadlines count from here after a pause"
    )
    promote_requested_by = models.CharField(max_length=150, blank=True)

    created_at = models.DateTimeField(default=timezone.now)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    state_changed_at = models.DateTimeField(default=timezone.now)

    # What the steps did, so a re-run finds its own work and a person can follow it.
    target_image = models.CharField(max_length=300, blank=True, help_text="promoted, by digest")
    build_id = models.CharField(max_length=64, blank=True)
    build_log_url = models.URLField(max_length=400, blank=True)
    template = models.CharField(max_length=63, blank=True, help_text="new instance template")
    previous = models.JSONField(
        default=dict, blank=True, help_text="what ran before: template, digest, serving group"
    )
    operations = models.JSONField(default=list, blank=True)
    progress = models.JSONField(default=dict, blank=True, help_text="instances by version, zone")
    verification = models.JSONField(default=dict, blank=True)
    analysis = models.JSONField(
        default=dict, blank=True, help_text="the canary's judgements (deployments/analysis.py)"
    )

    # Engine bookkeeping: one worker at a time holds the step lease; a worker that dies lets it
    # lapse and the next one carries on. `retries` counts transient errors in the current state.
    lease_owner = models.CharField(max_length=64, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    next_check_at = models.DateTimeField(null=True, blank=True, db_index=True)
    retries = models.PositiveSmallIntegerField(default=0)

    objects = DeploymentQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["component", "state"])]
        permissions = [
            ("start_deployment", "Can start, redeploy and roll back deployments"),
            ("cancel_deployment", "Can cancel deployments"),
            ("approve_deployment", "Can approve or reject deployments"),
            ("override_freeze", "Can start deployments during a deploy freeze"),
        ]

    def __str__(self):
        return f"deployment #{self.pk} of {self.release}"

    def get_absolute_url(self):
        return reverse("deployment", args=[self.pk])

    @property
    def is_active(self):
        return self.state in self.ACTIVE

    @property
    def is_final(self):
        return self.state in self.FINAL

    def can_become(self, state) -> bool:
        return state in self.TRANSITIONS[self.state]

    @property
    def took(self) -> str:
        """How long it ran, from starting to promote to its end, for people; "" until both."""
        if not (self.started_at and self.finished_at):
            return ""
        seconds = max(int((self.finished_at - self.started_at).total_seconds()), 0)
        hours, rest = divmod(seconds, 3600)
        minutes, seconds = divmod(rest, 60)
        if hours:
            return f"{hours} h {minutes} min"
        return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"

    def is_rollback_target(self, running: "Deployment | None") -> bool:
        """Whether its release may be rolled back to: this deployment succeeded on its
        component and its release is not the one running there now (actions.rollback)."""
        return (
            self.state == self.S.SUCCEEDED
            and running is not None
            and self.release_id != running.release_id
        )

    def transition(self, to, *, actor=None, reason="", request=None, **fields):
        """Move to state `to`, or raise InvalidTransition. Saves, and records timeline + audit.
        Saves only the fields it sets: a person's request written meanwhile (cancel, pause,
        promote) is never overwritten by the engine's older copy of the row."""
        to = self.State(to)
        if not self.can_become(to):
            raise InvalidTransition(f"{self} cannot go from {self.state} to {to}")
        before = self.state
        now = clock.now()
        self.state, self.state_changed_at = to, now
        self.reason = reason
        self.retries = 0
        for name, value in fields.items():
            setattr(self, name, value)
        if to == self.S.QUEUED and not self.queued_at:
            self.queued_at = now
        if to == self.S.PROMOTING and not self.started_at:
            self.started_at = now
        if to in self.FINAL:
            self.finished_at = now
        elif to == self.S.ROLLING_BACK:
            self.finished_at = None
        changed = {"state", "state_changed_at", "reason", "retries", "queued_at", "started_at"}
        changed |= {"finished_at", *fields}
        with transaction.atomic():
            self.save(update_fields=sorted(changed) if self.pk else None)
            self.log("state", f"{before} → {to}" + (f": {reason}" if reason else ""))
            AuditEvent.record(
                f"deployment.{to}",
                actor=actor,
                obj=self,
                message=reason,
                data={"from": before, "to": to},
                request=request,
            )
            state_changed.send_robust(Deployment, deployment=self, before=before, to=to)

    # --- a person steering a running rollout ---------------------------------------------------

    def started_operation(self, what: str) -> bool:
        return any(op["what"] == what for op in self.operations)

    @property
    def clock_started_at(self):
        """When the current state's deadlines started counting: the state change, or the last
        resume after a pause, whichever is later."""
        if self.resumed_at and self.resumed_at > self.state_changed_at:
            return self.resumed_at
        return self.state_changed_at

    @property
    def canary_running(self) -> bool:
        """A canary serves beside the old version and is not promoted yet: it may be paused,
        promoted early or aborted."""
        return (
            self.strategy == Component.Strategy.CANARY
            and self.state in (self.S.ROLLING_OUT, self.S.VERIFYING)
            and self.progress.get("phase", "canary") == "canary"
            and not self.cancel_requested
        )

    @property
    def warm_window(self) -> bool:
        """Blue-green traffic is on the new colour while the old one still runs: swapping back is
        one patch of the backend service."""
        return (
            self.strategy == Component.Strategy.BLUE_GREEN
            and self.state == self.S.VERIFYING
            and self.started_operation("swap")
            and not self.started_operation("retire-old")
            and not self.cancel_requested
        )

    @property
    def stoppable(self) -> bool:
        """Whether cancelling can still undo it. Once a blue-green deployment retires its old
        colour there is nothing to swap back to, so it finishes."""
        if self.is_final or self.state == self.S.ROLLING_BACK:
            return False
        return not (
            self.strategy == Component.Strategy.BLUE_GREEN and self.started_operation("retire-old")
        )

    def _steer(self, user, action: str, line: str, reason: str, request, **fields) -> None:
        """Write a person's request, only its own fields, with a timeline line and an audit row."""
        for name, value in fields.items():
            setattr(self, name, value)
        with transaction.atomic():
            self.save(update_fields=list(fields))
            self.log("step", f"{line}: {reason}" if reason else line)
            AuditEvent.record(
                f"deployment.{action}", actor=user, obj=self, message=reason, request=request
            )

    def request_cancel(self, user, reason: str = "", request=None) -> None:
        """A running deployment stops at the engine's next safe point and rolls back."""
        if not self.stoppable or self.state in self.WAITING:
            raise InvalidTransition(
                f"A deployment that is {self.get_state_display().lower()} cannot be cancelled."
            )
        if not self.cancel_requested:
            self._stop(user, "cancel_requested", "cancelled", reason, request)

    def _stop(self, user, action: str, cause: str, reason: str, request, **fields) -> None:
        """Ask the engine to roll back at its next step, `cause` by `user` (and why) being the
        rollback's reason."""
        why = f"{cause} by {user.get_username()}" + (f": {reason}" if reason else "")
        self._steer(
            user,
            action,
            f"{cause} by {user.get_username()}; rolling back at the next safe point",
            reason,
            request,
            cancel_requested=True,
            cancel_reason=why,
            **fields,
        )

    def pause(self, user, reason: str = "", request=None) -> None:
        """Hold a canary where it is: the engine does nothing more until someone resumes,
        promotes or aborts it. It still holds its component meanwhile."""
        if not self.canary_running:
            raise InvalidTransition(f"{self} is not a running canary: there is nothing to pause.")
        if self.paused_at:
            return
        by = user.get_username()
        self._steer(
            user, "paused", f"paused by {by}", reason, request, paused_by=by, paused_at=clock.now()
        )

    def resume(self, user, reason: str = "", request=None) -> None:
        """Carry on after a pause. The state's deadlines count afresh from now and verification
        starts over: checks from before the pause say nothing about the canary now."""
        if not self.paused_at:
            raise InvalidTransition(f"{self} is not paused.")
        self._steer(
            user,
            "resumed",
            f"resumed by {user.get_username()}",
            reason,
            request,
            paused_by="",
            paused_at=None,
            resumed_at=clock.now(),
        )

    def promote_now(self, user, reason: str, request=None) -> None:
        """Skip the rest of the canary's observation: every instance moves to the new version,
        which is then verified as a whole like any rollout. Needs a reason (audited)."""
        reason = (reason or "").strip()
        if not reason:
            raise InvalidTransition("Say why the canary should be promoted before it is judged.")
        if not self.canary_running:
            raise InvalidTransition(f"{self} is not a running canary: there is nothing to promote.")
        fields = {"promote_requested_by": user.get_username()}
        if self.paused_at:
            fields |= {"paused_by": "", "paused_at": None, "resumed_at": clock.now()}
        by = fields["promote_requested_by"]
        self._steer(user, "promoted_early", f"promoted early by {by}", reason, request, **fields)

    def abort(self, user, reason: str = "", request=None) -> None:
        """Take the canary away: the group goes back to the old version alone."""
        if not self.canary_running:
            raise InvalidTransition(f"{self} is not a running canary: there is nothing to abort.")
        self._stop(
            user, "canary_aborted", "canary aborted", reason, request, paused_by="", paused_at=None
        )

    def swap_back(self, user, reason: str = "", request=None) -> None:
        """Blue-green, while the old colour is still warm: traffic goes back to it and the new
        colour is retired."""
        if not self.warm_window:
            raise InvalidTransition(
                f"{self} is not in a blue-green warm window: there is no warm colour to swap to."
            )
        self._stop(user, "swapped_back", "swapped back", reason, request)

    def try_start(self) -> bool:
        """Take the component and move queued → promoting. False while another deployment holds
        the component or an older one is queued ahead (FIFO). The component row lock serialises
        starters on PostgreSQL and MySQL; SQLite's IMMEDIATE transactions serialise them there."""
        with transaction.atomic():
            Component.objects.select_for_update().get(pk=self.component_id)
            current = Deployment.objects.select_for_update().get(pk=self.pk)
            if current.state != self.S.QUEUED:
                self.refresh_from_db()
                return current.state in self.ACTIVE
            others = Deployment.objects.filter(component_id=self.component_id).exclude(pk=self.pk)
            holder = others.active().first()
            ahead = others.filter(state=self.S.QUEUED, queued_at__lt=current.queued_at).exists()
            if holder or ahead:
                why = (
                    f"waiting for {holder}" if holder else "waiting for an older queued deployment"
                )
                if current.reason != why:
                    current.reason = why
                    current.save(update_fields=["reason"])
                    current.log("state", why)
                self.refresh_from_db()
                return False
            current.transition(self.S.PROMOTING, reason="started")
        self.refresh_from_db()
        return True

    def frozen_until(self, at=None):
        """(window, until) while a deploy freeze would keep this deployment from starting."""
        from environments.models import freeze_in_force

        if self.freeze_override_by or self.is_final:
            return None
        return freeze_in_force(self.component.environment, at)

    @property
    def freeze(self):
        """For pages: the freeze holding this deployment now, as (window, until), or None."""
        return self.frozen_until()

    def freeze_hold(self, at=None):
        """Like frozen_until, and notes the wait on the row and the timeline the first time."""
        hold = self.frozen_until(at)
        if hold is None:
            return None
        window, until = hold
        why = f"deploy freeze {window.name} ({window.reason}) until {until:%Y-%m-%d %H:%M} UTC"
        if self.reason != why:
            self.reason = why
            self.save(update_fields=["reason"])
            self.log("state", why)
        return hold

    def override_freeze(self, user, reason: str, request=None):
        """Let this deployment start although its environment is frozen. Needs a reason."""
        reason = (reason or "").strip()
        if not reason:
            raise InvalidTransition("say why the freeze should be overridden")
        if self.state not in self.WAITING:
            raise InvalidTransition(f"{self} is {self.get_state_display().lower()}, not waiting")
        with transaction.atomic():
            self.freeze_override_by = user.get_username()
            self.freeze_override_reason = reason
            self.save(update_fields=["freeze_override_by", "freeze_override_reason"])
            self.log("state", f"deploy freeze overridden by {self.freeze_override_by}: {reason}")
            AuditEvent.record(
                "deployment.freeze_override", actor=user, obj=self, message=reason, request=request
            )

    @classmethod
    def next_queued(cls, component_id):
        """The deployment that should start next on a component, if any."""
        return (
            cls.objects.filter(component_id=component_id, state=cls.S.QUEUED)
            .order_by("queued_at", "id")
            .first()
        )

    def log(self, kind, message, **data):
        """Append one line to this deployment's timeline."""
        return DeploymentEvent.objects.create(
            deployment=self, kind=kind, message=message, data=data, at=clock.now()
        )


class InvalidTransition(Exception):
    pass


class DeploymentEvent(models.Model):
    """One line of a deployment's timeline: a state change, a step done, a retry, progress."""

    class Kind(models.TextChoices):
        STATE = "state", "State"
        STEP = "step", "Step"
        RETRY = "retry", "Retry"
        PROGRESS = "progress", "Progress"
        ERROR = "error", "Error"

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(default=timezone.now)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    message = models.TextField()
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self):
        return f"{self.at:%H:%M:%S} {self.kind} {self.message}"


class Approval(models.Model):
    """One person's decision on a deployment that waits for approval."""

    class Decision(models.TextChoices):
        APPROVE = "approve", "Approved"
        REJECT = "reject", "Rejected"

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="approvals")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    decision = models.CharField(max_length=8, choices=Decision.choices)
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self):
        return f"{self.user} {self.decision} {self.deployment}"


@receiver(post_save, sender=Deployment, dispatch_uid="deployments-created-state")
def _announce_creation(sender, instance, created, raw=False, **kwargs):
    """A deployment is born in a state without a transition; tell `state_changed` all the same."""
    if created and not raw:
        state_changed.send_robust(Deployment, deployment=instance, before=None, to=instance.state)
