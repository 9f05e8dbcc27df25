"""Permission edges of Omni's own pages: what each role may see or do on a page that serves
several roles, checked through the real views."""
import uuid

import pytest
from django.urls import reverse

from channels import conversations
from channels.models import Conversation, ConversationStatus, InboundMessage
from contacts.models import Contact


@pytest.fixture
def conversation(db):
    contact = Contact.objects.create(external_id="bob", first_name="Bob", phone="+14155550123")
    conversation = Conversation.objects.create(contact=contact, channel="sms", status=ConversationStatus.OPEN)
    InboundMessage.objects.create(contact=contact, conversation=conversation, channel="sms", provider="sandbox",
                                  provider_message_id=uuid.uuid4().hex, from_address=contact.phone,
                                  body="Where is my parcel?")
    return conversation


def test_notes_stay_out_of_the_thread_for_those_who_may_not_read_them(client, user_in, conversation):
    # given an agent's note on a conversation (notes are the agents': Compliance may view
    # conversations but holds no channels.view_conversationnote)
    agent = user_in("agent", "Support agents")
    conversations.add_note(conversation, "Customer sounded upset, offer a refund", author=agent)
    compliance = user_in("compliance", "Compliance")
    assert not compliance.has_perm("channels.view_conversationnote")

    # when compliance staff open the thread
    client.force_login(compliance)
    page = client.get(reverse("omni-web:thread", args=[conversation.pk]))

    # then they read what the customer wrote, not the note
    assert page.status_code == 200
    assert "Where is my parcel?" in page.content.decode()
    assert "offer a refund" not in page.content.decode()
    assert "note" not in [entry.kind for entry in page.context["thread"].entries]

    # and the agent still reads it
    client.force_login(agent)
    assert "offer a refund" in client.get(reverse("omni-web:thread", args=[conversation.pk])).content.decode()
