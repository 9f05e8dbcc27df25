import pytest
from django.db import connection

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


def test_constants_are_written_into_the_sql_and_a_percent_sign_in_one_survives():
    Contact.objects.create(email="ann@example.com", first_name="Ann 50%", country="FR")
    Contact.objects.create(email="bob@example.com", first_name="Bob", country="FR")
    template = QueryTemplate(lambda email: Contact.objects.filter(email=email, first_name__contains="50%")
                             .values_list("first_name", flat=True), "email")

    assert template.rows(email="ann@example.com") == [("Ann 50%",)]
    assert template.rows(email="bob@example.com") == []
    sql, params = template.statement(email="ann@example.com")
    if connection.vendor == "postgresql":
        assert params == ["ann@example.com"]
        assert "LIKE  E'%%50\\\\%%%%'" in sql  # the literal, its % doubled for the placeholders


@pytest.mark.postgres
def test_the_inbound_sender_query_binds_only_the_senders_values():
    """With its statuses as parameters, PostgreSQL's generic plan could not use the partial
    index of unclosed conversations, and on a full database it planned the query anew for every
    inbound message (0.3 ms of the server's time each)."""
    from channels.provider_reports import KNOWN_SENDER

    sql, params = KNOWN_SENDER["phone"].statement(channel="sms", address="+14155550123",
                                                        address_hash="ab12", provider="twilio",
                                                        provider_message_id="SM1")

    assert sorted(set(params)) == ["+14155550123", "SM1", "ab12", "sms", "twilio"]
    assert "'closed'" in sql and "'bounced'" in sql
