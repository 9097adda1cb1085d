"""Verify a rollout: the component's probe must pass N times in a row within a deadline, and the
strategy's new instances must be healthy. Each call makes one check and records it. A canary
is then judged by its metrics beside the baseline (deployments/analysis.py) before it is
promoted."""

from django.conf import settings

from environments.probes import probe_now

from .analysis import analyse, check_5xx_ceiling
from .steps import Step, StepFailed, later
from .strategies import strategy_for


def verify(step: Step):
    deployment = step.deployment
    strategy = strategy_for(step)
    needed = step.option("verify_passes", settings.GANTRY_VERIFY_PASSES)
    record = deployment.verification
    if strategy.promote_requested():
        return strategy.verified()
    since = deployment.clock_started_at.isoformat()
    if record.get("since") != since:
        record = {"since": since, "needed": needed, "passes": 0, "checks": []}
    if record["passes"] >= needed:
        return _passed(step, strategy)
    check_5xx_ceiling(step)
    result = probe_now([step.component])[step.component.pk]
    instances_ok, instances = strategy.instances_healthy()
    ok = result.ok and instances_ok
    line = f"probe {result.status} ({result.detail}); {instances}"
    record["passes"] = record["passes"] + 1 if ok else 0
    record["checks"] = [
        *record["checks"],
        {"at": step.now().isoformat(), "ok": ok, "detail": line},
    ][-10:]
    record["last"] = line
    if record["passes"] >= needed:
        record["summary"] = f"healthy {needed} times in a row"
    step.save(verification=record)
    if record["passes"] >= needed:
        step.save(f"verified: {record['summary']}")
        return _passed(step, strategy)
    timeout = step.option("verify_timeout", settings.GANTRY_VERIFY_TIMEOUT)
    if step.seconds_in_state() > timeout:
        raise StepFailed(
            f"verification failed: not healthy {needed} times in a row within "
            f"{timeout:g}s; last check: {line}"
        )
    step.waiting(f"{needed} healthy checks in a row, {record['passes']} so far; last: {line}")
    return later(step.option("verify_interval", settings.GANTRY_VERIFY_INTERVAL))


def _passed(step: Step, strategy):
    """The probes passed: judge the canary if there is one to judge, else done."""
    return analyse(step, strategy) if strategy.analysed() else strategy.verified()
