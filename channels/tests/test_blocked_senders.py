"""Blocked senders: their messages are stored but open nothing and get no automated answer;
blocking and unblocking are audited, in channels.conversations and in the admin."""
import pytest
from django.contrib.auth import get_user_model

from channels import conversations
from channels.models import BlockedSender, Conversation, InboundMessage, Message
from compliance.models import Consent
from contacts.models import ContactEvent
from omni.models import AuditEntry, AuditPersonalData

from .inbound import ALICE, writer

SPAMMER = "+14155550177"


@pytest.fixture
def write_in(client, twilio_settings):
    return writer(client, twilio_settings)


@pytest.fixture
def agent(db):
    return get_user_model().objects.create_user(username="agent", password="not-used", is_staff=True)


@pytest.fixture
def blocked_alice(contact, agent):
    return conversations.block_sender("sms", "+1 415 555 0100", reason="abuse", note="Threats on 2 Dec", actor=agent)


def test_blocking_keeps_the_address_as_messages_carry_it_and_audits_it_outside_the_chain(blocked_alice, contact,
                                                                                          agent):
    assert (blocked_alice.channel, blocked_alice.address, blocked_alice.reason) == ("sms", ALICE, "abuse")
    assert blocked_alice.blocked_by == agent
    entry = AuditEntry.objects.get(action="sender.blocked")
    assert (entry.contact_id, entry.actor_id, entry.reason) == (contact.pk, agent.pk, "abuse")
    assert ALICE not in str(entry.data)
    assert AuditPersonalData.objects.get(entry=entry).data == {"address": ALICE, "note": "Threats on 2 Dec"}


def test_blocking_an_address_blocked_already_returns_its_block(blocked_alice, agent):
    again = conversations.block_sender("sms", ALICE, reason="spam", actor=agent)

    assert again == blocked_alice
    assert BlockedSender.objects.count() == 1
    assert AuditEntry.objects.filter(action="sender.blocked").count() == 1


@pytest.mark.parametrize("channel, address, problem", [
    ("sms", "not a number", "not a phone number"),
    ("email", "nobody at example", "valid email"),
    ("push", "token", "Nobody writes in on push"),
])
def test_a_bad_block_is_refused_in_words(agent, db, channel, address, problem):
    with pytest.raises(conversations.ConversationError, match=problem):
        conversations.block_sender(channel, address, reason="spam", actor=agent)
    with pytest.raises(conversations.ConversationError, match="reason must be one of"):
        conversations.block_sender("sms", ALICE, reason="bored", actor=agent)
    assert not BlockedSender.objects.exists()


def test_a_blocked_senders_message_is_stored_and_opens_nothing(write_in, blocked_alice, contact):
    inbound = write_in("You will regret this", sid="SMz1")

    assert (inbound.blocked, inbound.contact, inbound.conversation) == (True, contact, None)
    assert inbound.handled_at is not None  # support automation never looks at it
    assert not Conversation.objects.exists()
    assert not ContactEvent.objects.filter(name="inbound.replied").exists()
    assert AuditEntry.objects.get(action="inbound.received").data["blocked"] is True


def test_a_blocked_sender_continues_no_conversation_that_was_open(write_in, contact, agent):
    write_in("Hello", sid="SMz2")
    conversation = Conversation.objects.get()
    conversations.block_sender("sms", ALICE, reason="spam", actor=agent)

    blocked = write_in("BUY NOW", sid="SMz3")

    assert blocked.conversation is None
    conversation.refresh_from_db()
    assert conversation.last_inbound_at < blocked.received_at


def test_a_blocked_unknown_sender_gets_no_contact(write_in, agent, db):
    conversations.block_sender("sms", SPAMMER, reason="spam", actor=agent)

    inbound = write_in("Cheap watches", sid="SMz4", sender=SPAMMER)

    assert (inbound.blocked, inbound.contact) == (True, None)


def test_a_blocked_senders_stop_is_honoured_but_not_answered(write_in, twilio_settings, blocked_alice, contact,
                                                            keyword_lists):
    twilio_settings.OMNI_PROVIDERS = {**twilio_settings.OMNI_PROVIDERS, "sms": "sandbox"}  # Omni would answer
    from compliance.actions import record_consent_change
    record_consent_change(contact, "sms", "marketing", "granted", "import", lawful_basis="consent")

    stop = write_in("STOP", sid="SMz5")

    assert stop.keyword == "stop"
    assert Consent.objects.get(contact=contact, channel="sms", purpose="marketing").status == "revoked"
    assert not Message.objects.filter(idempotency_key=f"keyword:{stop.pk}").exists()


def test_after_unblocking_the_next_message_opens_a_conversation(write_in, blocked_alice, agent):
    assert conversations.unblock_sender(blocked_alice, actor=agent)
    assert not conversations.unblock_sender(blocked_alice, actor=agent)

    inbound = write_in("Sorry about earlier", sid="SMz6")

    assert (inbound.blocked, inbound.conversation.status) == (False, "open")
    blocked_alice.refresh_from_db()
    assert (blocked_alice.unblocked_by, blocked_alice.unblocked_at is not None) == (agent, True)
    assert AuditEntry.objects.filter(action="sender.unblocked").count() == 1


def test_an_address_can_be_blocked_again_after_an_unblock(blocked_alice, agent):
    conversations.unblock_sender(blocked_alice, actor=agent)

    again = conversations.block_sender("sms", ALICE, reason="spam", actor=agent)

    assert again != blocked_alice
    assert [block.unblocked_at is None for block in BlockedSender.objects.order_by("pk")] == [False, True]


# --- the admin -------------------------------------------------------------------------------

def test_an_administrator_blocks_from_the_list_through_the_action(admin_client, admin_user, db):
    response = admin_client.post("/admin/channels/blockedsender/add/",
                                 {"channel": "sms", "address": "(415) 555-0177", "reason": "spam", "note": ""})

    assert response.status_code == 302, response.content
    block = BlockedSender.objects.get()
    assert (block.address, block.blocked_by) == (SPAMMER, admin_user)
    assert AuditEntry.objects.get(action="sender.blocked").actor_id == admin_user.pk


def test_the_admin_says_in_words_that_an_address_is_blocked_already(admin_client, agent, db):
    conversations.block_sender("sms", SPAMMER, reason="spam", actor=agent)

    response = admin_client.post("/admin/channels/blockedsender/add/",
                                 {"channel": "sms", "address": SPAMMER, "reason": "abuse", "note": ""})

    assert response.status_code == 200
    assert "is blocked on SMS already" in response.content.decode()
    assert BlockedSender.objects.count() == 1


def test_unblocking_in_the_admin_asks_first_and_then_lifts_the_block(admin_client, admin_user, blocked_alice):
    selection = {"action": "unblock_selected", "_selected_action": [blocked_alice.pk]}

    asked = admin_client.post("/admin/channels/blockedsender/", selection)
    blocked_alice.refresh_from_db()
    assert asked.status_code == 200 and "Yes, unblock them" in asked.content.decode()
    assert blocked_alice.unblocked_at is None

    done = admin_client.post("/admin/channels/blockedsender/", {**selection, "confirmed": "yes"})

    assert done.status_code == 302
    blocked_alice.refresh_from_db()
    assert (blocked_alice.unblocked_by, blocked_alice.unblocked_at is not None) == (admin_user, True)


def test_a_block_is_history_that_nobody_edits(admin_client, blocked_alice):
    page = admin_client.get(f"/admin/channels/blockedsender/{blocked_alice.pk}/change/")
    edit = admin_client.post(f"/admin/channels/blockedsender/{blocked_alice.pk}/change/",
                             {"channel": "sms", "address": SPAMMER, "reason": "spam", "note": ""})

    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    assert edit.status_code == 403
    blocked_alice.refresh_from_db()
    assert blocked_alice.address == ALICE


def test_the_blocked_filter_of_inbound_messages(admin_client, write_in, blocked_alice):
    write_in("Spam", sid="SMz7")

    shown = admin_client.get("/admin/channels/inboundmessage/?blocked=yes")
    hidden = admin_client.get("/admin/channels/inboundmessage/?blocked=no")

    assert "Spam" in shown.content.decode() and "Spam" not in hidden.content.decode()
    assert InboundMessage.objects.get().blocked
