"""The Celery application shared by web, worker and beat."""

import os

from celery import Celery
from celery.signals import worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("gantry")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def _import_the_gcp_clients(**kwargs):
    """Import google-cloud-compute once, when a worker starts, not in its first deployment step:
    the import takes about 4 s, which a fresh worker would otherwise spend mid-step."""
    import gcp.adapter  # noqa: F401
