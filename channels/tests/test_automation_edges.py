"""Edges of support automation as customers meet them: phrases written the way phones write them."""
import pytest

from channels.models import Conversation, EscalationRule, EscalationTrigger, Message, MessageSource, SupportQueue

pytestmark = pytest.mark.django_db


def automated_texts():
    return [m.content[0]["text_body"] for m in Message.objects.filter(
        source=MessageSource.SYSTEM, idempotency_key__startswith="auto:").order_by("pk")]


@pytest.fixture
def complaints(db):
    return SupportQueue.objects.create(name="Complaints")


def test_an_accented_phrase_matches_however_the_phone_encodes_the_accent(write_in, contact, complaints, tick, now):
    # given a rule for "réclamation", typed in the admin (é as one character)
    EscalationRule.objects.create(name="Complaint", trigger=EscalationTrigger.PHRASE, phrases="r\u00e9clamation",
                                  queue=complaints, acknowledgement="A person will look at it.")

    # when a phone sends the same word with é as e and a combining accent (Unicode NFD)
    write_in("Je fais une R\u0065\u0301CLAMATION")
    tick(now)

    # then it is the same word: escalated and acknowledged
    assert Conversation.objects.get().queue == complaints
    assert automated_texts() == ["A person will look at it."]


def test_a_phrase_with_an_apostrophe_matches_a_phone_s_curly_apostrophe(write_in, contact, complaints, tick, now):
    # given a rule typed with a straight apostrophe
    EscalationRule.objects.create(name="Locked out", trigger=EscalationTrigger.PHRASE, phrases="can't log in",
                                  queue=complaints, acknowledgement="A person will look at it.")

    # when an iPhone (smart punctuation) sends it with a typographic one
    write_in("Help, I can\u2019t log in!")
    tick(now)

    # then the rule matches
    assert Conversation.objects.get().queue == complaints
    assert automated_texts() == ["A person will look at it."]


# --- the inbox and the figures -------------------------------------------------------------------

def test_inbox_pages_show_each_conversation_once_when_many_share_a_due_time_with_microseconds(agents):
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from contacts.models import Contact
    from omni.web import inbox

    admin = get_user_model().objects.create_superuser("boss", "boss@omni.example", "pw")
    due = timezone.now().replace(microsecond=123456) + timedelta(hours=1)
    made = []
    for n in range(9):
        contact = Contact.objects.create(external_id=f"c{n}", phone=f"+1415555{n:04d}")
        made.append(Conversation.objects.create(
            contact=contact, channel="sms", first_response_due_at=due if n % 3 else None,
            follow_up_at=due + timedelta(microseconds=n % 2)).pk)
    seen, cursor = [], None
    for _ in range(20):
        page = inbox.read_page(admin, inbox.Filters(), cursor, size=2)
        seen += [row.conversation.pk for row in page.rows]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert sorted(seen) == sorted(made) and len(seen) == len(made)
    assert seen == [row.conversation.pk for row in inbox.read_page(admin, inbox.Filters(), size=50).rows]


def test_figures_periods_are_days_in_the_current_time_zone(settings, contact):
    from datetime import date, datetime, timezone as dt_timezone

    from omni.web.support_figures import Period, figures_for

    settings.TIME_ZONE = "America/New_York"
    # 03:00 UTC on 5 March is 22:00 on 4 March in New York
    Conversation.objects.create(contact=contact, channel="sms",
                                opened_at=datetime(2024, 3, 5, 3, tzinfo=dt_timezone.utc))
    assert figures_for(Period(date(2024, 3, 4), date(2024, 3, 4))).total.opened == 1
    assert figures_for(Period(date(2024, 3, 5), date(2024, 3, 5))).total.opened == 0
