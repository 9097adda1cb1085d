from django.apps import AppConfig


class DeploymentsConfig(AppConfig):
    name = "deployments"
    verbose_name = "Releases and deployments"

    def ready(self):
        from environments.models import new_readings

        from . import fragments
        from .models import state_changed
        from .tasks import on_state_changed

        state_changed.connect(on_state_changed, dispatch_uid="deployments-prune-templates")
        new_readings.connect(fragments.on_new_readings, dispatch_uid="deployments-draw-ahead")
