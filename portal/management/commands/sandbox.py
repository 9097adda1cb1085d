"""`python manage.py sandbox`: run the local GCP and nemo-stack stand-in in the foreground."""

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Serve the sandbox (Compute, Cloud Build, registry, the monitored stack) on one port."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8900, help="0 picks a free port")
        parser.add_argument("--topology", help="topology YAML (default: topology/nemo.yaml)")
        parser.add_argument("--speed", type=float, default=1.0, help="simulated s per real s")
        parser.add_argument("--boot-time", type=float, default=20.0, help="simulated s per VM boot")
        parser.add_argument("--snapshot", help="JSON file to restore the state from and save to")
        parser.add_argument("--verbose", action="store_true", help="log every request")

    def handle(self, *args, **options):
        from sandbox.server import serve

        serve(
            host=options["host"],
            port=options["port"],
            out=self.stdout,
            topology=options["topology"],
            speed=options["speed"],
            boot_time=options["boot_time"],
            snapshot=options["snapshot"],
            verbose=options["verbose"],
        )
