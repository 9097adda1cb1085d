from celery import shared_task

from . import cloud, mig, monitoring, stats


@shared_task(acks_late=True, ignore_result=True, time_limit=60, soft_time_limit=45)
def probe_environment(environment_id: int):
    """One sweep of one environment, then its Redis and LLM figures. A second copy running at
    once only adds samples."""
    monitoring.sweep(environment_id)
    stats.collect(environment_id)


@shared_task(acks_late=True, ignore_result=True, time_limit=60, soft_time_limit=45)
def read_instance_groups(environment_id: int):
    """The environment's MIGs and dev VM through the GCP adapter, stored for the MIG panel. Kept
    apart from the probes so a slow or throttled GCP API never delays a health sweep."""
    mig.collect(environment_id)


@shared_task(acks_late=True, ignore_result=True, time_limit=60, soft_time_limit=45)
def read_cloud_metrics(environment_id: int):
    """The environment's Cloud Monitoring figures for the dashboards, once a
    GANTRY_CLOUD_METRICS_SECONDS; apart from the sweeps, like the instance groups."""
    if cloud.due(environment_id):
        cloud.collect(environment_id)


@shared_task(acks_late=True, ignore_result=True)
def probe_due():
    """Beat calls this every few seconds; it starts the sweeps whose interval has passed."""
    for environment in monitoring.due_environments():
        probe_environment.delay(environment.pk)
        read_instance_groups.delay(environment.pk)
        read_cloud_metrics.delay(environment.pk)


@shared_task(acks_late=True, ignore_result=True)
def prune():
    return monitoring.prune()
