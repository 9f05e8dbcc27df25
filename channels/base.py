"""The common shape of every provider adapter.

A provider is a template method, as in django-anymail: `Provider.send()` runs the same steps
in the same order for every provider (check the channel, build the payload, post it, parse
the answer) and each provider module fills in those hooks. A refusal is raised as a
DeliveryError that says whether trying again could help; a call whose outcome cannot be known
(the request went out, no answer came back) as DeliveryOutcomeUnknown.
"""
from dataclasses import dataclass, field
from decimal import Decimal

from .models import DeliveryStatus


@dataclass
class SendResult:
    """What a provider said when it accepted a delivery."""

    provider_message_id: str
    # The delivery status the provider's answer justifies: accepted for sending means "sent";
    # delivery itself is only ever learnt later, from a webhook.
    status: str = DeliveryStatus.SENT
    segments: int | None = None
    cost: Decimal | None = None
    currency: str = ""
    # The interesting part of the provider's answer, kept in the audit log.
    raw: dict = field(default_factory=dict)


class DeliveryError(Exception):
    """A send that did not happen.

    `permanent` errors (an invalid number, a rejected address) never retry: the message falls
    back to its next channel instead. Transient ones (timeouts, throttling, 5xx) are retried
    with backoff. `suppression_reason` (a compliance.models.SuppressionReason value) is set when
    the error proves the address must not be messaged again on this channel.
    """

    def __init__(self, message: str, code: str = "", permanent: bool = False, suppression_reason: str = ""):
        super().__init__(message)
        self.message = message
        self.code = str(code or "")
        self.permanent = permanent
        self.suppression_reason = suppression_reason

    def __str__(self):
        kind = "permanent" if self.permanent else "transient"
        code = f" [{self.code}]" if self.code else ""
        return f"{self.message}{code} ({kind})"


class DeliveryOutcomeUnknown(Exception):
    """The provider call may or may not have been accepted (the request went out, no answer came).

    Never retried, since a retry could send twice: the delivery is marked uncertain and the
    provider's own webhook settles it (it carries Omni's delivery id, see the providers).
    """


class CannotTell(Exception):
    """The provider cannot say whether it accepted a delivery whose id Omni does not know."""


class Provider:
    """One way of carrying deliveries: a provider for one or more channels.

    Subclasses set `name` (the value used in settings.OMNI_PROVIDERS and stored on
    Delivery.provider) and `channels`, and implement build_payload, post and parse_result.
    """

    name: str = ""
    channels: frozenset[str] = frozenset()

    def send(self, delivery) -> SendResult:
        """Hand one delivery to the provider. Raises DeliveryError when it was not accepted."""
        return self.deliver(self.prepare(delivery))

    def prepare(self, delivery) -> dict:
        """The request for this delivery, checked; nothing has left Omni yet (DeliveryError if it
        cannot be made). The send worker calls prepare() and deliver() apart: an error before the
        call is known to have sent nothing."""
        if delivery.channel not in self.channels:
            raise DeliveryError(f"{self.name} does not deliver {delivery.channel}", code="unsupported_channel",
                                permanent=True)
        return self.build_payload(delivery)

    def deliver(self, payload: dict) -> SendResult:
        """Make the provider call with a prepared request and read its answer."""
        return self.parse_result(self.post(payload))

    def build_payload(self, delivery) -> dict:
        """The provider's request for this delivery. No network; may raise DeliveryError."""
        raise NotImplementedError

    def post(self, payload: dict):
        """Make the provider call and return its answer.

        Raises DeliveryError when the provider refused or could not be reached, and
        DeliveryOutcomeUnknown when the request went out but no answer came back.
        """
        raise NotImplementedError

    def parse_result(self, response) -> SendResult:
        raise NotImplementedError

    def fetch_status(self, delivery) -> str | None:
        """The delivery status the provider reports now for a delivery it accepted (known by
        provider_message_id), or None when it cannot be asked or does not know. Used to settle
        uncertain deliveries; raises DeliveryError when the provider cannot be reached."""
        return None

    def find_send(self, delivery) -> SendResult | None:
        """Look for the message the provider accepted for a delivery whose provider id was never
        recorded (its worker died during the call): a SendResult with the provider's id and the
        status it reports, or None when the provider holds no such message or several that could
        be it. Raises CannotTell when the provider cannot be asked without an id (the default),
        DeliveryError when it cannot be reached."""
        raise CannotTell(f"{self.name} cannot be asked about a message without its id")

    def answers_keywords(self, channel: str, sender: str) -> bool:
        """Whether the provider itself replies to STOP, START and HELP texted to `sender` (our
        number) on `channel`; Omni then records the keyword and sends no reply of its own."""
        return False

    def after_send(self, delivery) -> None:
        """Runs once the sent delivery is committed (the sandbox schedules its simulated events)."""
