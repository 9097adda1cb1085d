from django.apps import AppConfig


class EnvironmentsConfig(AppConfig):
    name = "environments"
    verbose_name = "Environments and topology"

    def ready(self):
        from .fragments import on_new_readings
        from .models import new_readings

        new_readings.connect(on_new_readings, dispatch_uid="environments-draw-ahead")
