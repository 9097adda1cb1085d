from django.apps import AppConfig


class InsightsConfig(AppConfig):
    name = "insights"
    verbose_name = "Delivery insights (DORA)"

    def ready(self):
        """Join /metrics: the DORA gauges are read from rows at scrape time like the rest."""
        from .metrics import register

        register()
