from django.core.management.base import BaseCommand, CommandError

from omni.audit_verification import verify_and_record


class Command(BaseCommand):
    help = ("Walk the audit chain; exit non-zero at the first broken link, if it falls short of or differs from "
            "its latest checkpoint, if personal data or sealed decisions changed, or if entries stay unsealed "
            "too long. Each run is recorded as an audit.verified entry.")

    def handle(self, *args, **options):
        report, problems = verify_and_record(reason="command")
        self.stdout.write(f"Checked {report.checked} sealed audit entries.")
        if problems:
            raise CommandError(" ".join(problems))
        self.stdout.write(self.style.SUCCESS("Audit chain intact."))
