"""Where notifications hook into the rest of Gantry, without those apps knowing about them.

- Deployment states: every `Deployment.transition()` writes a `deployment.<state>` audit row in
  its transaction; a deployment created already waiting for approval (releases.new_deployment)
  makes no transition, so its creation is watched too.
- Component health: probe sweeps store HealthEvents with bulk_create, which sends no post_save;
  environments.monitoring sends `health_changed` with them instead.
"""

from django.db.models.signals import post_save

from .events import deployment_reached, health_changed


def on_audit_event(sender, instance, created, raw=False, **kwargs):
    action = instance.action
    if created and not raw and action.startswith("deployment.") and instance.object_id:
        deployment_reached(instance.object_id, action.removeprefix("deployment."))


def on_deployment_saved(sender, instance, created, raw=False, **kwargs):
    if created and not raw and instance.state == instance.State.PENDING_APPROVAL:
        deployment_reached(instance, instance.state)


def on_health_changed(sender, events, **kwargs):
    health_changed(events)


def connect():
    from audit.models import AuditEvent
    from deployments.models import Deployment
    from environments.monitoring import health_changed as health_signal

    post_save.connect(on_audit_event, sender=AuditEvent, dispatch_uid="notifications-audit")
    post_save.connect(
        on_deployment_saved, sender=Deployment, dispatch_uid="notifications-deployment"
    )
    health_signal.connect(on_health_changed, dispatch_uid="notifications-health")
