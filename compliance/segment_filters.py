"""The consent filter of segments: contacts opted in, opted out, or with no consent on record
for one channel and purpose. Registered in contacts.segments by ComplianceConfig.ready()."""
from django.db.models import Exists, OuterRef, Q

from contacts.segments import FilterKind, FormField, register
from omni.choices import Channel, ConsentStatus, Purpose

from .models import Consent

STATUSES = {
    "opted_in": "opted in",
    "opted_out": "opted out",
    # No row yet, or one whose status was never decided.
    "no_record": "no record",
}


def consent_problems(config, path):
    problems = []
    if config.get("channel") not in Channel.values:
        problems.append(f"{path}.channel must be one of {', '.join(Channel.values)}")
    if config.get("purpose") not in Purpose.values:
        problems.append(f"{path}.purpose must be one of {', '.join(Purpose.values)}")
    if config.get("status") not in STATUSES:
        problems.append(f"{path}.status must be one of {', '.join(STATUSES)}")
    return problems


def consent_q(config, now):
    consents = Consent.objects.filter(contact=OuterRef("pk"), channel=config["channel"], purpose=config["purpose"])
    if config["status"] == "opted_in":
        return Q(Exists(consents.filter(status=ConsentStatus.GRANTED)))
    if config["status"] == "opted_out":
        return Q(Exists(consents.filter(status=ConsentStatus.REVOKED)))
    return ~Q(Exists(consents.exclude(status=ConsentStatus.UNKNOWN)))


def register_segment_filters():
    register(FilterKind(
        name="consent", label="Consent", order=40,
        fields=[
            FormField("status", "Is", "select", choices=list(STATUSES.items())),
            FormField("channel", "Channel", "select", choices=Channel.choices),
            FormField("purpose", "Purpose", "select", choices=Purpose.choices),
        ],
        validate=consent_problems, to_q=consent_q,
    ))
