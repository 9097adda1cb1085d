from django.apps import AppConfig


class DeploymentsConfig(AppConfig):
    name = "deployments"
    verbose_name = "Releases and deployments"

    def ready(self):
        from . import github_protection, github_status, intake
        from .models import state_changed

        intake.watch_topology()

        state_changed.connect(github_status.on_state_changed, dispatch_uid="github-statuses")
        state_changed.connect(github_protection.on_state_changed, dispatch_uid="github-rules")
