"""Messages Omni sends on compliance's behalf (compliance/hooks.py), connected in ChannelsConfig.ready()."""
from django.utils.html import escape

from omni.choices import Channel, Purpose

from .models import MessageSource
from .routing import create_message, dispatch

DOUBLE_OPT_IN_SUBJECT = "Please confirm your subscription"


def send_double_opt_in_confirmation(sender, *, contact, change, confirm_url: str, **kwargs) -> None:
    """compliance.hooks.double_opt_in_requested: email the link that confirms a pending consent.

    Transactional (the person asked for it), in the consent's transaction; the send itself is
    queued when it commits. One message per pending change, however often the hook runs.
    """
    text = (f"Please confirm that you want to receive marketing email from us:\n\n{confirm_url}\n\n"
            "If you did not ask for this, ignore this email and nothing will be sent.")
    html = (f'<p>Please confirm that you want to receive marketing email from us.</p>'
            f'<p><a href="{escape(confirm_url)}">Confirm my subscription</a></p>'
            f'<p>If you did not ask for this, ignore this email and nothing will be sent.</p>')
    message, created = create_message(
        contact=contact, channel_plan=[{"channel": Channel.EMAIL}], source=MessageSource.SYSTEM,
        purpose=Purpose.TRANSACTIONAL, idempotency_key=f"double_opt_in:{change.pk}",
        content=[{"channel": Channel.EMAIL, "subject": DOUBLE_OPT_IN_SUBJECT, "text_body": text, "html_body": html}],
    )
    if created:
        dispatch(message)
