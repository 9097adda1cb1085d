"""Probe sweeps and what is kept of them: samples, the flap-filtered status, roll-ups."""

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Avg, Count, Max, Min, Q
from django.db.models.functions import TruncHour
from django.dispatch import Signal
from django.utils import timezone

from .models import (
    Component,
    ComponentHealth,
    Environment,
    HealthEvent,
    ProbeRollup,
    ProbeSample,
    StatSample,
    Status,
)
from .probes import probe_now

HEALTH_FIELDS = ["status", "since", "candidate", "candidate_count"]

# Sent inside the sweep's transaction with `events`, the HealthEvents just stored: bulk_create
# sends no post_save. Notifications listen here.
health_changed = Signal()


def classify(result) -> str:
    """up, but slower than GANTRY_PROBE_SLOW_MS, is degraded."""
    if result.status == Status.UP and (result.latency_ms or 0) > settings.GANTRY_PROBE_SLOW_MS:
        return Status.DEGRADED
    return result.status


def sweep(environment_id: int) -> list[HealthEvent]:
    """Probe every component of an environment at once and store what was seen."""
    environment = Environment.objects.filter(pk=environment_id).first()
    if environment is None:  # deleted since the sweep was queued
        return []
    components = list(Component.objects.filter(environment_id=environment_id))
    for component in components:  # one environment object for all, not one per row
        component.environment = environment
    results = probe_now(components)
    now = timezone.now()
    confirmations = settings.GANTRY_STATUS_CONFIRMATIONS
    events = []
    with transaction.atomic():
        ProbeSample.objects.bulk_create(
            ProbeSample(
                component_id=c.pk,  # not the instance: its descriptor costs more than the row
                at=now,
                status=classify(results[c.pk]),
                latency_ms=results[c.pk].latency_ms,
                detail=results[c.pk].detail[:300],
            )
            for c in components
        )
        healths = {
            h.component_id: h
            for h in ComponentHealth.objects.select_for_update().filter(
                component__environment_id=environment_id
            )
        }
        fresh, changed = [], []
        for component in components:
            result = results[component.pk]
            health = healths.get(component.pk)
            if health is None:
                health = ComponentHealth(component=component)
                fresh.append(health)
            moved, event = health.observe(classify(result), now, result.detail, confirmations)
            if moved and health.pk:
                changed.append(health)
            if event:
                events.append(event)
        ComponentHealth.objects.bulk_create(fresh)
        ComponentHealth.objects.bulk_update(changed, HEALTH_FIELDS, batch_size=200)
        HealthEvent.objects.bulk_create(events)
        if events:
            health_changed.send_robust(sender=HealthEvent, events=events)
        Environment.readings_stored(environment_id, now, probed_at=now)
    return events


def due_environments(now=None):
    """Environments whose last sweep is older than their probe interval."""
    now = now or timezone.now()
    return [
        env
        for env in Environment.objects.all()
        if env.probed_at is None or (now - env.probed_at).total_seconds() >= env.probe_interval
    ]


def prune(now=None) -> dict:
    """Roll raw samples older than the retention into hourly rows, then delete them; drop
    roll-ups and events older than their retention. Safe to run twice."""
    now = now or timezone.now()
    cutoff = now - timedelta(hours=settings.GANTRY_SAMPLE_RETENTION_HOURS)
    cutoff = cutoff.replace(minute=0, second=0, microsecond=0)
    old = ProbeSample.objects.filter(at__lt=cutoff)
    hours = (
        old.annotate(hour=TruncHour("at"))
        .values("component_id", "hour")
        .annotate(
            samples=Count("id"),
            up=Count("id", filter=Q(status=Status.UP)),
            latency_avg_ms=Avg("latency_ms"),
            latency_max_ms=Max("latency_ms"),
        )
    )
    with transaction.atomic():
        rolled = 0
        for row in hours:
            ProbeRollup.objects.update_or_create(
                component_id=row["component_id"],
                hour=row["hour"],
                defaults={k: row[k] for k in ("samples", "up", "latency_avg_ms", "latency_max_ms")},
            )
            rolled += 1
        deleted, _ = old.delete()
        keep_days = timedelta(days=settings.GANTRY_ROLLUP_RETENTION_DAYS)
        ProbeRollup.objects.filter(hour__lt=now - keep_days).delete()
        HealthEvent.objects.filter(at__lt=now - keep_days).delete()
        StatSample.objects.filter(at__lt=cutoff).delete()
    return {"rolled_up_hours": rolled, "deleted_samples": deleted}


def uptime(component_ids, hours=24, now=None) -> dict[int, float | None]:
    """Share of 'up' samples per component over the last hours, in one query. `unknown` samples
    (nothing to probe, no address) say nothing about the component and are left out."""
    return {pk: share for pk, (share, _) in uptime_since(component_ids, hours, now).items()}


def uptime_since(component_ids, hours=24, now=None) -> dict[int, tuple[float | None, object]]:
    """(uptime, time of the oldest sample it counts) per component: a figure over a few
    minutes of data must not read as a day's."""
    since = (now or timezone.now()) - timedelta(hours=hours)
    rows = (
        ProbeSample.objects.filter(component_id__in=component_ids, at__gte=since)
        .exclude(status=Status.UNKNOWN)
        .values("component_id")
        .annotate(total=Count("id"), up=Count("id", filter=Q(status=Status.UP)), first=Min("at"))
    )
    found = {r["component_id"]: (100.0 * r["up"] / r["total"], r["first"]) for r in rows}
    return {pk: found.get(pk, (None, None)) for pk in component_ids}
