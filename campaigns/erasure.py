"""What campaigns keeps of a person, emptied on erasure (contacts.hooks.erase_contact).

Live enrollments exit through the enrollment state machine (campaigns/enrollment_state.py);
every enrollment's context (trigger properties, stored webhook answers) is emptied, with the
answers' excerpts in the outbound call log (omni.WebhookCall, matched by the idempotency key
campaigns/webhook_calls.py gives each call of an enrollment). Campaign recipients not sent yet
are left out.
"""
from django.db.models import Q

from omni.models import WebhookCall

from . import enrollment_state
from .models import LIVE_ENROLLMENT_STATES, CampaignRecipient, Enrollment, EnrollmentState, RecipientOutcome
from .waking import webhook_key
from .webhook_calls import idempotency_key

ERASED = "contact_erased"


def erase_campaign_data(sender, contact, now, **kwargs) -> dict:
    live = list(Enrollment.objects.select_for_update().filter(contact_id=contact.pk, state__in=LIVE_ENROLLMENT_STATES)
                .order_by("pk"))
    entries = [enrollment_state.end(e, EnrollmentState.EXITED, ERASED, now, actor_label="erasure") for e in live]
    enrollment_state.save(live, entries)
    enrollment_ids = list(Enrollment.objects.filter(contact_id=contact.pk).values_list("pk", flat=True))
    contexts = Enrollment.objects.filter(pk__in=enrollment_ids).update(context={}, pause_reason="")
    calls = 0
    if enrollment_ids:
        # Each call of an enrollment is keyed "omni:webhook:<enrollment id>:<visit>".
        prefixes = Q()
        for pk in enrollment_ids:
            prefixes |= Q(idempotency_key__startswith=idempotency_key(webhook_key(pk, "")))
        calls = WebhookCall.objects.filter(prefixes).update(response_excerpt="", error="")
    skipped = CampaignRecipient.objects.filter(contact_id=contact.pk, outcome=RecipientOutcome.PENDING).update(
        outcome=RecipientOutcome.SKIPPED, skip_reason=ERASED, decided_at=now, claimed_at=None)
    return {"campaigns.enrollments_exited": len(live), "campaigns.enrollment_context": contexts,
            "campaigns.webhook_calls": calls, "campaigns.recipients_skipped": skipped}
