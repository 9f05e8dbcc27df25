"""Staff sign-in events written to the audit log (django-axes raises them; omni's AppConfig connects them)."""
from django.conf import settings

from omni import audit


def audit_lockout(sender, request=None, username=None, ip_address=None, **kwargs) -> None:
    """A sign-in refused by a lockout: auth.locked_out, with reason too_many_failed_logins when
    this attempt started the lockout and attempt_while_locked_out for each one after it (who and
    where go to personal data, outside the chain)."""
    from axes.models import AccessAttempt

    failures = (AccessAttempt.objects.filter(username=username, ip_address=ip_address)
                .values_list("failures_since_start", flat=True).first()) or 0
    started = failures <= settings.AXES_FAILURE_LIMIT
    audit.record("auth.locked_out", actor_label="django-axes",
                 reason="too_many_failed_logins" if started else "attempt_while_locked_out",
                 data={"failure_limit": settings.AXES_FAILURE_LIMIT, "failures": failures},
                 personal={"username": username or "", "ip_address": ip_address or ""})
