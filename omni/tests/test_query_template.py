import pytest

from contacts.models import Contact
from omni.lib.sql import QueryTemplate

pytestmark = pytest.mark.django_db


def test_a_query_template_is_built_once_and_runs_with_each_calls_values():
    Contact.objects.create(email="ann@example.com", first_name="Ann", country="FR")
    Contact.objects.create(email="bob@example.com", first_name="Bob", country="FR")
    built = []

    def build(email):
        built.append(email)
        return Contact.objects.filter(email=email, country="FR").values_list("first_name", flat=True)

    template = QueryTemplate(build, "email")

    assert template.rows(email="ann@example.com") == [("Ann",)]
    assert template.rows(email="bob@example.com") == [("Bob",)]
    assert template.rows(email="nobody@example.com") == []
    assert len(built) == 1


def test_a_value_that_never_reaches_the_parameters_is_refused():
    template = QueryTemplate(lambda email: Contact.objects.filter(email__iexact=email.upper()), "email")

    with pytest.raises(ValueError, match="never reach the query's parameters: email"):
        template.rows(email="ann@example.com")
