"""Canary analysis during verification: observe the canary's instances beside the baseline's
for the component's window, read both from Cloud Monitoring, and let the judge decide.

Rules (the verify step calls `analyse` once the probes have passed):
- The observation starts when the probes first pass; judgement k is due `interval`·k seconds
  later, the last at `window`. Between judgements the step sleeps until the next is due.
- Each judgement reads every metric over the whole observation so far, per instance, one
  sample a minute, and is recorded on the row and in the timeline.
- A judgement before the last rolls the canary back only for a failing critical metric that
  had data; the last must reach the `pass` score, or the canary rolls back with the metrics
  that failed as the cause. No data at the end is a failure, never a pass.
- A person's "promote now" skips the rest (the verify step checks that first).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings

from environments.canary import AnalysisConfig
from gcp.monitoring import (
    APP_LATENCY,
    APP_REQUESTS,
    CPU_UTILIZATION,
    MEMORY_PERCENT,
    InstanceSeries,
    Monitoring,
    error_share,
    server_error_share,
)

from .judge import NODATA, OUTCOME_PASS, Judgement, judge
from .steps import Step, StepFailed, later

# Samples kept per side and metric on the row, for the deployment page's small charts.
KEPT_SAMPLES = 60

Samples = dict[str, list[float]]  # instance → values, oldest first
Reader = Callable[[Monitoring, str, list[str], datetime, datetime], Samples]


def _values(found: tuple[InstanceSeries, ...], scale: float = 1.0) -> Samples:
    out: Samples = defaultdict(list)
    for series in found:
        out[series.instance] += [s.value * scale for s in series.samples]
    return out


def latency(monitoring, project, names, start, end) -> Samples:
    """p95 request latency in ms, as the app's Prometheus summary reports it."""
    found = monitoring.by_instance(
        project, APP_LATENCY, names, start, end, labels={"quantile": "0.95"}
    )
    return _values(found, 1000.0)


def errors(monitoring, project, names, start, end) -> Samples:
    """Server errors as a % of requests, per minute, from the app's request counter."""
    found = monitoring.by_instance(project, APP_REQUESTS, names, start, end, rate=True)
    by_instance: dict[str, list[InstanceSeries]] = defaultdict(list)
    for series in found:
        by_instance[series.instance].append(series)
    return {
        instance: [s.value for s in server_error_share(outcomes, "outcome")]
        for instance, outcomes in by_instance.items()
    }


def cpu(monitoring, project, names, start, end) -> Samples:
    return _values(monitoring.by_instance(project, CPU_UTILIZATION, names, start, end), 100.0)


def memory(monitoring, project, names, start, end) -> Samples:
    found = monitoring.by_instance(
        project, MEMORY_PERCENT, names, start, end, labels={"state": "used"}
    )
    return _values(found)


READERS: dict[str, Reader] = {
    "latency": latency,
    "errors": errors,
    "cpu": cpu,
    "memory": memory,
}


def observe(
    config: AnalysisConfig,
    project: str,
    canary: list[str],
    baseline: list[str],
    start: datetime,
    end: datetime,
    monitoring: Monitoring | None = None,
) -> dict[str, tuple[list[float], list[float]]]:
    """Each configured metric's (canary samples, baseline samples), pooled over each side's
    instances."""
    monitoring = monitoring or Monitoring.from_settings()
    data = {}
    for metric in config.metrics:
        read = READERS[metric.name](monitoring, project, [*canary, *baseline], start, end)
        data[metric.name] = (
            [v for name in canary for v in read.get(name, ())],
            [v for name in baseline for v in read.get(name, ())],
        )
    return data


def judgement_record(judgement: Judgement, data: dict, index: int, at: datetime) -> dict:
    verdicts = []
    for verdict in judgement.verdicts:
        canary, baseline = data.get(verdict.metric.name, ((), ()))
        verdicts.append(
            verdict.as_dict()
            | {
                "canary": [round(v, 4) for v in canary[-KEPT_SAMPLES:]],
                "baseline": [round(v, 4) for v in baseline[-KEPT_SAMPLES:]],
            }
        )
    return {
        "index": index,
        "at": at.isoformat(),
        "score": judgement.score,
        "outcome": judgement.outcome,
        "summary": judgement.summary(),
        "verdicts": verdicts,
    }


def analyse(step: Step, strategy):
    """One look at the canary: wait for the next judgement, or make it (see the module)."""
    config = step.component.analysis
    now = step.now()
    state = step.deployment.analysis or {
        "started": now.isoformat(),
        "window": config.window,
        "interval": config.interval,
        "marginal": config.marginal,
        "pass": config.pass_score,
        "judgements": [],
    }
    started = datetime.fromisoformat(state["started"])
    index = len(state["judgements"]) + 1
    total = config.judgements
    due_at = started + timedelta(seconds=config.due(index))
    if not step.deployment.analysis:
        step.save(
            f"observing the canary beside the baseline for {config.window:g}s, "
            f"judged {total} time{'s' if total > 1 else ''}",
            analysis=state,
        )
    if now < due_at:
        step.waiting(f"canary analysis: judgement {index} of {total} due at {due_at:%H:%M:%S}")
        return later((due_at - now).total_seconds())
    check_5xx_ceiling(step)
    canary, baseline = strategy.analysis_groups()
    data = observe(config, step.project, canary, baseline, started, now)
    judgement = judge(config, data)
    state = {
        **state,
        "judgements": [*state["judgements"], judgement_record(judgement, data, index, now)],
    }
    last = index >= total
    early_failure = [v for v in judgement.critical_failures if v.result != NODATA]
    if last or early_failure:
        state["outcome"], state["score"] = judgement.outcome, judgement.score
    step.save(f"canary analysis {index}/{total}: {judgement.summary()}"[:1000], analysis=state)
    if last and judgement.outcome != OUTCOME_PASS:
        raise StepFailed(f"canary analysis failed: {judgement.summary()}"[:1000])
    if not last and early_failure:
        raise StepFailed(
            f"canary analysis failed at judgement {index} of {total}: {judgement.summary()}"[:1000]
        )
    if last:
        return strategy.verified()
    next_at = started + timedelta(seconds=config.due(index + 1))
    return later(max((next_at - now).total_seconds(), 1.0))


def check_5xx_ceiling(step: Step) -> None:
    """Fail verification when, in a whole minute since it began, the load balancer answered
    more than the component's `verify_5xx_ceiling` % of its requests with a 5xx
    (GANTRY_VERIFY_5XX_CEILING; 0 turns the check off). Components without a backend service,
    and verifications shorter than a minute, have nothing to check."""
    service = step.component.backend_service
    ceiling = step.option("verify_5xx_ceiling", settings.GANTRY_VERIFY_5XX_CEILING)
    start, end = step.deployment.clock_started_at, step.now()
    if not service or ceiling <= 0 or end - start < timedelta(minutes=1):
        return
    monitoring = Monitoring.from_settings()
    classes = monitoring.lb_requests_by_class(step.project, service, start, end)
    over = [s for s in error_share(classes) if s.value > ceiling]
    if over:
        worst = max(over, key=lambda s: s.value)
        raise StepFailed(
            f"verification failed: the load balancer answered {worst.value:.1f} % of "
            f"{service}'s requests with a 5xx in the minute to {worst.at:%H:%M}, above the "
            f"{ceiling:g} % ceiling"
        )
