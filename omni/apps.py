from django.apps import AppConfig
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class OmniConfig(AppConfig):
    name = "omni"
    verbose_name = "Omni platform"

    def ready(self):
        from axes.signals import user_locked_out

        from . import checks, signin

        user_locked_out.connect(signin.audit_lockout, dispatch_uid="omni.audit_lockout")

        # System checks only run for manage.py commands; a web or Celery process started in
        # production must refuse to start on a bad setting too, naming it.
        if settings.PRODUCTION:
            errors = checks.check_production_settings(None) + checks.check_provider_settings(None)
            if errors:
                raise ImproperlyConfigured("\n".join(f"{error.id}: {error.msg}" for error in errors))
