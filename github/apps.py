from django.apps import AppConfig


class GitHubConfig(AppConfig):
    name = "github"
    label = "github"
    verbose_name = "GitHub"

    def ready(self):
        from deployments.models import state_changed

        from . import intake, protection, statuses

        intake.watch_topology()
        state_changed.connect(statuses.on_state_changed, dispatch_uid="github-statuses")
        state_changed.connect(protection.on_state_changed, dispatch_uid="github-rules")
