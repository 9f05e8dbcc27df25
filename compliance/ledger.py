"""The send ledger frequency caps count: one row per message queued on a plan step."""
from dataclasses import dataclass
from datetime import datetime

from omni.lib.bulk import insert_rows

from .models import SendLedger

FIELDS = ["contact_id", "channel", "purpose", "message_id", "plan_step", "at"]


@dataclass(frozen=True)
class Send:
    contact_id: int
    channel: str
    purpose: str
    message_id: int
    plan_step: int
    at: datetime


def record(sends: list[Send]) -> None:
    """Write the sends a batch queued, in one statement (COPY on PostgreSQL). Callers hold the
    locks of the sends' contacts (channels/state.py): a batch that reads the ledger after
    them sees these rows."""
    insert_rows(SendLedger, FIELDS, [(s.contact_id, s.channel, s.purpose, s.message_id, s.plan_step, s.at)
                                     for s in sends])
