import pytest

from templates.models import Template


@pytest.fixture
def promo(db):
    """A marketing template with no variants yet."""
    return Template.objects.create(key="spring-sale", name="Spring sale", purpose="marketing")
