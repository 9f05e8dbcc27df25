from django.core.management.base import BaseCommand, CommandError

from omni.audit_verification import UNSEALED_TOO_LONG, verify_chain


class Command(BaseCommand):
    help = ("Walk the audit chain; exit non-zero at the first broken link, if it falls short of or differs from "
            "its latest checkpoint, if personal data or sealed decisions changed, or if entries stay unsealed "
            "too long.")

    def handle(self, *args, **options):
        report = verify_chain()
        problems = []
        if report.broken:
            problems.append(f"Audit chain broken at {report.broken}.")
        if report.record_problems:
            problems.append("Records sealed into the chain do not hold: " + "; ".join(report.record_problems) + ".")
        if report.checkpoint_problem:
            problems.append(f"The chain does not hold against its checkpoint: {report.checkpoint_problem}.")
        if report.personal_problems:
            problems.append("Personal data was changed: " + "; ".join(report.personal_problems) + ".")
        if report.stale_unsealed:
            problems.append(
                f"{report.stale_unsealed} audit entries unsealed for more than {UNSEALED_TOO_LONG} "
                f"(oldest from {report.oldest_stale_at:%Y-%m-%d %H:%M:%S}): is the sealer (beat) running?"
            )
        self.stdout.write(f"Checked {report.checked} sealed audit entries.")
        if problems:
            raise CommandError(" ".join(problems))
        self.stdout.write(self.style.SUCCESS("Audit chain intact."))
