from django.core.management.base import BaseCommand

from omni.audit import seal_pending


class Command(BaseCommand):
    help = "Seal every committed, unsealed audit entry into the hash chain (what the beat sealer does)."

    def handle(self, *args, **options):
        sealed = seal_pending()
        self.stdout.write(f"Sealed {sealed} audit entries.")
