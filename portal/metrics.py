"""Gantry's own figures for Prometheus, computed from the database at scrape time.

Web and worker processes run on several machines, so counters kept in one process would each
see a slice. Every figure here is read from the shared rows (and the broker) when Prometheus
asks, in a fixed number of aggregate queries that does not grow with components or history.
See docs/observability.md for the list.
"""

from __future__ import annotations

import hmac
import logging
from collections import defaultdict
from datetime import timedelta
from functools import cache

from django.conf import settings
from django.db.models import (
    BigIntegerField,
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    Min,
    OuterRef,
    Q,
    Subquery,
    Sum,
)
from django.db.models.functions import Cast
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

log = logging.getLogger(__name__)

DURATION_BUCKETS = (30, 60, 120, 300, 600, 900, 1800, 3600)
# The default queue and the one notifications go to; queues named in CELERY_TASK_ROUTES join them.
QUEUES = ("celery", "notifications")
VIEW_PERMISSIONS = ("deployments.view_deployment", "environments.view_component")


class GantryCollector(Collector):
    """Yields every gantry_* family. A part that cannot be read (most often the broker) is left
    out and flagged in gantry_scrape_errors, so one broken source never fails the scrape."""

    def collect(self):
        now = timezone.now()
        errors = GaugeMetricFamily(
            "gantry_scrape_errors",
            "1 when a part of this scrape could not be read and its metrics are missing.",
            labels=["source"],
        )
        components = cache(self._components)  # read once, by the first part that needs it
        for source, part in (
            ("deployments", lambda: self.deployments(components(), now)),
            ("webhooks", self.webhooks),
            ("probes", lambda: self.probes(components(), now)),
            ("celery", self.queues),
        ):
            try:
                families = list(part())
            except Exception:
                log.warning("metrics: cannot read %s", source, exc_info=True)
                errors.add_metric([source], 1)
                continue
            errors.add_metric([source], 0)
            yield from families
        yield errors

    @staticmethod
    def _components() -> dict:
        from environments.models import Component

        return {
            pk: (environment, name, status)
            for pk, environment, name, status in Component.objects.values_list(
                "pk", "environment__name", "name", "health__status"
            )
        }

    # --- deployments ----------------------------------------------------------------------------

    def deployments(self, components, now):
        from environments.models import Environment

        environments = list(Environment.objects.values_list("name", flat=True))
        yield self._finished(components)
        yield from self._unfinished(components, environments, now)
        yield self._durations(components, environments, now)

    @staticmethod
    def _finished(components):
        """Read from the append-only audit log, so the total never goes down: a deployment that
        succeeded and was rolled back later counts once in each outcome."""
        from audit.models import AuditEvent
        from deployments.models import Deployment

        family = CounterMetricFamily(
            "gantry_deployments_finished",
            "Deployments that reached a final state, by outcome (from the audit log).",
            labels=["environment", "component", "outcome"],
        )
        actions = {f"deployment.{state}": str(state) for state in Deployment.FINAL}
        component_of = Deployment.objects.filter(
            pk=Cast(OuterRef("object_id"), BigIntegerField())
        ).values("component_id")[:1]
        rows = (
            AuditEvent.objects.filter(object_type="deployments.deployment", action__in=actions)
            .annotate(component_id=Subquery(component_of))
            .values_list("component_id", "action")
            .annotate(n=Count("id"))
            .order_by()
        )
        for component_id, action, n in sorted(rows, key=lambda r: (r[0] or 0, r[1])):
            if component_id in components:
                environment, name, _ = components[component_id]
                family.add_metric([environment, name, actions[action]], n)
        return family

    @staticmethod
    def _unfinished(components, environments, now):
        from deployments.models import Deployment

        S = Deployment.State
        in_state = GaugeMetricFamily(
            "gantry_deployments",
            "Deployments now waiting or running, by state.",
            labels=["environment", "state"],
        )
        waiting = GaugeMetricFamily(
            "gantry_approvals_waiting",
            "Deployments waiting for approval.",
            labels=["environment"],
        )
        oldest = GaugeMetricFamily(
            "gantry_approval_oldest_age_seconds",
            "How long the oldest deployment waiting for approval has waited (0: none waits).",
            labels=["environment"],
        )
        counts = defaultdict(int)
        since = {}
        rows = (
            Deployment.objects.unfinished()
            .values_list("component_id", "state")
            .annotate(n=Count("id"), first=Min("created_at"))
            .order_by()
        )
        for component_id, state, n, first in rows:
            if component_id not in components:  # added since the components were read
                continue
            environment = components[component_id][0]
            counts[environment, state] += n
            if state == S.PENDING_APPROVAL:
                since[environment] = min(first, since.get(environment, first))
        states = [s for s in S if s not in Deployment.FINAL]
        for environment in environments:
            for state in states:
                in_state.add_metric([environment, state.value], counts[environment, state])
            waiting.add_metric([environment], counts[environment, S.PENDING_APPROVAL])
            age = (now - since[environment]).total_seconds() if environment in since else 0
            oldest.add_metric([environment], max(age, 0.0))
        return in_state, waiting, oldest

    @staticmethod
    def _durations(components, environments, now):
        """started_at → finished_at of the deployments that finished in the last
        GANTRY_METRICS_WINDOW_DAYS (those that never started have no duration). A snapshot of
        that window, not a running count: read it without rate()."""
        from deployments.models import Deployment

        family = HistogramMetricFamily(
            "gantry_deployment_duration_seconds",
            "Start to finish of deployments finished in the window "
            "(GANTRY_METRICS_WINDOW_DAYS), by outcome.",
            labels=["environment", "outcome"],
        )
        duration = ExpressionWrapper(
            F("finished_at") - F("started_at"), output_field=DurationField()
        )
        buckets = {
            f"le_{le}": Count("id", filter=Q(duration__lte=timedelta(seconds=le)))
            for le in DURATION_BUCKETS
        }
        rows = (
            Deployment.objects.filter(
                state__in=Deployment.FINAL,
                started_at__isnull=False,
                finished_at__gte=now - timedelta(days=settings.GANTRY_METRICS_WINDOW_DAYS),
            )
            .annotate(duration=duration)
            .values("component_id", "state")
            .annotate(total=Count("id"), seconds=Sum("duration"), **buckets)
            .order_by()
        )
        merged = {}
        for row in rows:
            if row["component_id"] not in components:
                continue
            key = (components[row["component_id"]][0], row["state"])
            into = merged.setdefault(key, defaultdict(float))
            for name in ("total", *buckets):
                into[name] += row[name]
            into["seconds"] += row["seconds"].total_seconds() if row["seconds"] else 0.0
        for (environment, outcome), figures in sorted(merged.items()):
            family.add_metric(
                [environment, outcome],
                [(floatToGoString(le), figures[f"le_{le}"]) for le in DURATION_BUCKETS]
                + [("+Inf", figures["total"])],
                sum_value=figures["seconds"],
            )
        return family

    # --- webhooks -------------------------------------------------------------------------------

    @staticmethod
    def webhooks():
        """Settled outcomes never change again, so they make a counter; `accepted` deliveries
        are still resolving their images and are counted apart, as a gauge."""
        from github.models import WebhookDelivery

        Outcome = WebhookDelivery.Outcome
        counts = dict(
            WebhookDelivery.objects.values_list("outcome").annotate(n=Count("id")).order_by()
        )
        total = CounterMetricFamily(
            "gantry_webhook_deliveries",
            "GitHub webhook calls by settled outcome.",
            labels=["outcome"],
        )
        for outcome in Outcome:
            if outcome != Outcome.ACCEPTED:
                total.add_metric([outcome.value], counts.get(outcome, 0))
        pending = GaugeMetricFamily(
            "gantry_webhook_deliveries_pending",
            "Accepted webhook calls whose images are still being resolved.",
            value=counts.get(Outcome.ACCEPTED, 0),
        )
        return total, pending

    # --- probes ---------------------------------------------------------------------------------

    @staticmethod
    def probes(components, now):
        from environments.models import Environment, ProbeSample, Status

        labels = ["environment", "component"]
        confirmed = GaugeMetricFamily(
            "gantry_component_status",
            "1 for the component's confirmed status (what the dashboards show), else 0.",
            labels=[*labels, "status"],
        )
        latest_status = GaugeMetricFamily(
            "gantry_probe_status",
            "1 for the status of the component's latest probe result, else 0.",
            labels=[*labels, "status"],
        )
        latency = GaugeMetricFamily(
            "gantry_probe_latency_seconds",
            "Latency of the component's latest probe result.",
            labels=labels,
        )
        recent = GaugeMetricFamily(
            "gantry_probe_samples_last_hour",
            "Probe results stored in the last hour, by status.",
            labels=[*labels, "status"],
        )
        probed = GaugeMetricFamily(
            "gantry_environment_probed_timestamp_seconds",
            "When the environment was last probed (Unix time).",
            labels=["environment"],
        )
        # The latest result of each component is the sample stored at its environment's probed_at.
        latest = {
            pk: (status, ms)
            for pk, status, ms in ProbeSample.objects.filter(
                at=F("component__environment__probed_at")
            ).values_list("component_id", "status", "latency_ms")
        }
        hour = defaultdict(int)
        for pk, status, n in (
            ProbeSample.objects.filter(at__gte=now - timedelta(hours=1))
            .values_list("component_id", "status")
            .annotate(n=Count("id"))
            .order_by()
        ):
            hour[pk, status] += n
        for pk, (environment, name, health) in components.items():
            current = health or Status.UNKNOWN
            last_status, ms = latest.get(pk, (None, None))
            for status in Status:
                names = [environment, name, status.value]
                confirmed.add_metric(names, int(status == current))
                if last_status:
                    latest_status.add_metric(names, int(status == last_status))
                recent.add_metric(names, hour[pk, status])
            if ms is not None:
                latency.add_metric([environment, name], ms / 1000)
        for environment, at in Environment.objects.values_list("name", "probed_at"):
            if at:
                probed.add_metric([environment], at.timestamp())
        return confirmed, latest_status, latency, recent, probed

    # --- celery ---------------------------------------------------------------------------------

    @staticmethod
    def queues():
        """Messages waiting in each known queue, asked of the broker the workers use (Redis
        lists, or the embedded SQLite broker's rows) through kombu."""
        from kombu import Connection

        timeout = settings.GANTRY_HEALTHZ_TIMEOUT
        options = dict(settings.CELERY_BROKER_TRANSPORT_OPTIONS)
        if settings.REDIS_URL:
            options.update(socket_timeout=timeout, socket_connect_timeout=timeout)
        family = GaugeMetricFamily(
            "gantry_celery_queue_length", "Messages waiting in a Celery queue.", labels=["queue"]
        )
        with Connection(
            settings.CELERY_BROKER_URL, transport_options=options, connect_timeout=timeout
        ) as conn:
            conn.ensure_connection(
                max_retries=1, interval_start=0, interval_step=0, timeout=timeout
            )
            channel = conn.default_channel
            for queue in known_queues():
                # On the Redis and SQLite transports a declare only counts (and names the queue).
                # (A passive one would miss kombu's global_keyprefix: its EXISTS is unprefixed.)
                family.add_metric([queue], channel.queue_declare(queue=queue).message_count)
        return [family]


def known_queues() -> list[str]:
    names = set(QUEUES)
    routes = getattr(settings, "CELERY_TASK_ROUTES", None)
    if isinstance(routes, dict):
        names |= {r["queue"] for r in routes.values() if isinstance(r, dict) and r.get("queue")}
    names |= {getattr(q, "name", q) for q in getattr(settings, "CELERY_TASK_QUEUES", None) or ()}
    if default := getattr(settings, "CELERY_TASK_DEFAULT_QUEUE", ""):
        names.add(default)
    return sorted(names)


registry = CollectorRegistry(auto_describe=False)
registry.register(GantryCollector())


def exposition() -> tuple[bytes, str]:
    """The scrape body and its content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


def scrape_allowed(request) -> bool | None:
    """True: let the scrape in. None: nobody is known (answer 401). False: a signed-in user
    without the viewer role (403).

    With GANTRY_METRICS_TOKEN set, `Authorization: Bearer <token>` lets Prometheus in without a
    session. Signed-in users with the viewer role may always look. A request that sends a wrong
    token is refused even when it also carries a session, so a broken scrape config shows up.
    """
    header = request.headers.get("Authorization", "")
    if header:
        expected = settings.GANTRY_METRICS_TOKEN
        scheme, _, given = header.partition(" ")
        if not expected or scheme.lower() != "bearer":
            return None
        return hmac.compare_digest(given.strip().encode(), expected.encode()) or None
    if not request.user.is_authenticated:
        return None
    return request.user.has_perms(VIEW_PERMISSIONS)
