"""Start-up checks of compliance's settings: a wrong value stops the start and names itself."""
from django.conf import settings
from django.core.checks import Error, register

from .keywords import EMBEDDED_OPT_OUT_POLICIES


@register()
def check_keyword_settings(app_configs, **kwargs):
    if settings.OMNI_KEYWORD_EMBEDDED_OPT_OUT not in EMBEDDED_OPT_OUT_POLICIES:
        return [Error(f"OMNI_KEYWORD_EMBEDDED_OPT_OUT must be one of {', '.join(EMBEDDED_OPT_OUT_POLICIES)}; "
                      f"it is {settings.OMNI_KEYWORD_EMBEDDED_OPT_OUT!r}.", id="omni.compliance.E001")]
    return []
