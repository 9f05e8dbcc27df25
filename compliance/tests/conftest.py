import pytest


@pytest.fixture
def double_opt_in(settings):
    settings.OMNI_DOUBLE_OPT_IN = True
    settings.OMNI_DOUBLE_OPT_IN_DAYS = 7
    settings.OMNI_PUBLIC_URL = "https://omni.example.com"
    return settings
