"""The DORA gauges on /metrics, joined to portal.metrics' registry when the app is ready.

One read of the deployments finished in the longest window (plus the fix period) serves every
window: three windows cost the same three queries as one.
"""

import logging
from datetime import timedelta

from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from . import dora

log = logging.getLogger(__name__)
LABELS = ["environment", "component", "window"]
FAMILIES = (
    # (name, help, Figures attribute)
    (
        "gantry_dora_deployment_frequency_per_day",
        "Succeeded deployments per day over the window.",
        "deployment_frequency",
    ),
    (
        "gantry_dora_lead_time_seconds",
        "Median time from release created (build) to succeeded deployment, over the window.",
        "lead_time",
    ),
    (
        "gantry_dora_change_fail_ratio",
        "Share of deployments in the window that failed or were rolled back (0 to 1).",
        "change_fail_rate",
    ),
    (
        "gantry_dora_recovery_time_seconds",
        "Median time from a failed deployment to the component's next success, over the window.",
        "recovery_time",
    ),
    (
        "gantry_dora_rework_ratio",
        "Share of deployments in the window that were unplanned: redeploys or fixes (0 to 1).",
        "rework_rate",
    ),
)


class DoraCollector(Collector):
    """Per component and window (7d, 30d, 90d). A figure with nothing to count is left out,
    never exported as 0: a component nobody deploys has no lead time. If the rows cannot be
    read, gantry_dora_scrape_error is 1 and the rest of /metrics is served as usual."""

    def collect(self):
        error = GaugeMetricFamily(
            "gantry_dora_scrape_error", "1 when the DORA figures could not be read."
        )
        try:
            families = self.figures(timezone.now())
        except Exception:
            log.warning("metrics: cannot read the DORA figures", exc_info=True)
            error.add_metric([], 1)
            yield error
            return
        error.add_metric([], 0)
        yield from families
        yield error

    @staticmethod
    def figures(now):
        longest = max(dora.WINDOWS)
        rows = dora.fetch(now - timedelta(days=longest), now)
        families = {
            name: GaugeMetricFamily(name, text, labels=LABELS) for name, text, _ in FAMILIES
        }
        for days in dora.WINDOWS:
            for scope in dora.report(now, days, rows=rows):
                for component in scope.components:
                    labels = [scope.name, component.name, f"{days}d"]
                    for name, _, attribute in FAMILIES:
                        value = getattr(component.figures, attribute)
                        if value is not None:
                            families[name].add_metric(labels, value)
        return list(families.values())


_registered = False


def register() -> None:
    global _registered
    if not _registered:
        from portal.metrics import registry

        registry.register(DoraCollector())
        _registered = True
