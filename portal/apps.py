from django.apps import AppConfig
from django.db.models.signals import post_migrate


def prepare_broker(**kwargs):
    """`migrate` creates the embedded broker's tables too (portal/broker.py says why)."""
    from django.conf import settings

    from .broker import prepare

    prepare(settings.CELERY_BROKER_URL, settings.CELERY_BROKER_TRANSPORT_OPTIONS)


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Gantry portal"

    def ready(self):
        from axes.signals import user_locked_out
        from django.contrib.auth.signals import user_logged_in, user_login_failed

        from . import sign_in_audit
        from .roles import sync_roles_after_migrate

        post_migrate.connect(sync_roles_after_migrate, dispatch_uid="gantry-sync-roles")
        post_migrate.connect(prepare_broker, sender=self, dispatch_uid="gantry-prepare-broker")
        user_logged_in.connect(sign_in_audit.signed_in, dispatch_uid="gantry-audit-login")
        user_login_failed.connect(sign_in_audit.sign_in_failed, dispatch_uid="gantry-audit-fail")
        user_locked_out.connect(sign_in_audit.locked_out, dispatch_uid="gantry-audit-lockout")
