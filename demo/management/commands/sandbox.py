"""`python manage.py sandbox`: run the local GCP and nemo-stack stand-in in the foreground."""

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Serve the sandbox (Compute, Cloud Build, registry, the monitored stack) on one port, "
        "and Cloud Monitoring's gRPC API on the next."
    )

    def add_arguments(self, parser):
        from sandbox.server import add_arguments

        add_arguments(parser)

    def handle(self, *args, **options):
        from sandbox.server import serve

        serve(
            host=options["host"],
            port=options["port"],
            monitoring_port=options["monitoring_port"],
            out=self.stdout,
            topology=options["topology"],
            speed=options["speed"],
            boot_time=options["boot_time"],
            snapshot=options["snapshot"],
            verbose=options["verbose"],
            mysql=options["mysql"],
        )
