from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from environments.topology import TopologyError, sync_topology


class Command(BaseCommand):
    help = "Create or update environments, networks and components from a topology YAML file."

    def add_arguments(self, parser):
        parser.add_argument("path", nargs="?", help="defaults to GANTRY_TOPOLOGY_FILE")
        parser.add_argument("--dry-run", action="store_true", help="show the diff, write nothing")
        parser.add_argument(
            "--prune", action="store_true", help="delete rows that are not in the file"
        )

    def handle(self, *args, path=None, dry_run=False, prune=False, **options):
        path = path or settings.GANTRY_TOPOLOGY_FILE
        try:
            result = sync_topology(path, dry_run=dry_run, prune=prune)
        except TopologyError as exc:
            raise CommandError(
                f"{path}: refused, nothing written:\n" + "\n".join(exc.problems)
            ) from None
        for change in result.changes:
            self.stdout.write(str(change))
        if not result.changed:
            self.stdout.write(f"{path}: no changes")
        elif dry_run:
            self.stdout.write(self.style.WARNING(f"{path}: dry run, nothing written"))
        else:
            self.stdout.write(self.style.SUCCESS(f"{path}: applied"))
