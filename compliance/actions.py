"""Changes to consent and suppression. Each validates, writes, and audits in one transaction."""
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from omni import audit
from omni.choices import Channel, LawfulBasis, Purpose
from omni.lib.bulk import filter_in, insert_rows

from . import hooks
from .links import confirmation_url
from .models import (
    Consent,
    ConsentChange,
    ConsentSource,
    ConsentStatus,
    ConsentText,
    ConsentTextKey,
    Suppression,
    SuppressionReason,
    hash_address,
)


@transaction.atomic
def record_consent_change(contact, channel: str, purpose: str, status: str, source: str, *, evidence=None,
                          actor=None, actor_label: str = "", lawful_basis: str = "", occurred_at=None,
                          announce: bool | None = None) -> ConsentChange:
    """Append a consent change and make it the contact's current consent for that scope.

    A change older than the current state (an import replaying history) is kept in the
    history but does not overwrite a newer decision. With double opt-in on, a marketing-email
    grant from a source that needs it (settings.OMNI_DOUBLE_OPT_IN_SOURCES) is kept as PENDING
    and a confirmation email is sent (compliance.hooks.double_opt_in_requested), unless the
    consent is already granted or the grant is older than it. A grant on a channel where the
    contact had nothing granted is an opt-in, announced through compliance.hooks.opted_in (the
    first SMS after it confirms the program) when announces_opt_in(source, announce) says so.
    """
    if channel not in Channel.values:
        raise ValueError(f"Unknown channel {channel!r}.")
    if purpose not in Purpose.values:
        raise ValueError(f"Unknown purpose {purpose!r}.")
    if status not in ConsentStatus.values:
        raise ValueError(f"Unknown consent status {status!r}.")
    if source not in ConsentSource.values:
        raise ValueError(f"Unknown consent source {source!r}.")
    if lawful_basis and lawful_basis not in LawfulBasis.values:
        raise ValueError(f"Unknown lawful basis {lawful_basis!r}.")
    occurred_at = occurred_at or timezone.now()
    confirm = status == ConsentStatus.GRANTED and needs_double_opt_in(channel, purpose, source)
    if confirm:
        current = (Consent.objects.select_for_update().filter(contact=contact, channel=channel, purpose=purpose)
                   .values_list("status", flat=True).first()) or ConsentStatus.UNKNOWN
        confirm = current != ConsentStatus.GRANTED
        if confirm:
            status = ConsentStatus.PENDING
            evidence = {**(evidence or {}), "double_opt_in": {"previous_status": current}}
    opts_in = status == ConsentStatus.GRANTED and announces_opt_in(source, announce) and not (
        Consent.objects.filter(contact=contact, channel=channel, status=ConsentStatus.GRANTED).exists())
    change = ConsentChange.objects.create(
        contact=contact, channel=channel, purpose=purpose, status=status, source=source,
        lawful_basis=lawful_basis, evidence=evidence or {}, actor=actor if getattr(actor, "is_authenticated", False) else None,
        actor_label=actor_label, occurred_at=occurred_at,
    )
    consent, _ = Consent.objects.select_for_update().get_or_create(contact=contact, channel=channel, purpose=purpose)
    current = consent.last_change_id is None or consent.updated_at <= occurred_at
    if current:
        consent.status = status
        consent.lawful_basis = lawful_basis
        consent.last_change = change
        consent.updated_at = occurred_at
        consent.save()
    audit.record(
        "consent.changed", contact=contact, obj=change, actor=actor, actor_label=actor_label, channel=channel,
        reason=f"{source}:{status}", data={"purpose": purpose, "status": status, "source": source},
        personal={"evidence": evidence} if evidence else None,
    )
    if confirm and current:
        # A grant older than the current choice is history only: its link could never confirm it.
        hooks.send(hooks.double_opt_in_requested, contact=contact, change=change,
                   confirm_url=confirmation_url(contact.pk, change.pk))
    if opts_in and current:
        hooks.send(hooks.opted_in, change=change)
    return change


# Two staff publishing a text of one key at once: the second retries with the next version.
PUBLISH_ATTEMPTS = 3


def publish_consent_text(key: str, text: str, *, actor=None) -> ConsentText:
    """Add the next version of the consent text shown at `key`; the pages show it from now on.

    Earlier versions stay as they were: the evidence of consents given under them names them.
    """
    if key not in ConsentTextKey.values:
        raise ValueError(f"Unknown consent text key {key!r}.")
    text = (text or "").strip()
    if not text:
        raise ValueError("A consent text cannot be empty.")
    for attempt in range(PUBLISH_ATTEMPTS):
        try:
            with transaction.atomic():
                current = ConsentText.objects.current(key)
                published = ConsentText.objects.create(
                    key=key, version=(current.version + 1) if current else 1, text=text,
                    created_by=actor if getattr(actor, "is_authenticated", False) else None)
                audit.record("consent_text.published", obj=published, actor=actor, reason=key,
                             data={"key": key, "version": published.version})
                return published
        except IntegrityError:
            if attempt == PUBLISH_ATTEMPTS - 1:
                raise


def needs_double_opt_in(channel: str, purpose: str, source: str) -> bool:
    """Whether a grant of this scope from this source waits for the contact's confirmation."""
    return (settings.OMNI_DOUBLE_OPT_IN and channel == Channel.EMAIL and purpose == Purpose.MARKETING
            and source in settings.OMNI_DOUBLE_OPT_IN_SOURCES)


def announces_opt_in(source: str, announce: bool | None = None) -> bool:
    """Whether an opt-in from `source` is announced (compliance.hooks.opted_in): `announce`
    when given; never for a keyword (the START reply is its confirmation); for an import only
    with settings.OMNI_CONFIRM_IMPORTED_OPT_INS (an import of a thousand long-standing
    subscribers must not text each of them); otherwise always."""
    if announce is not None:
        return announce
    if source == ConsentSource.KEYWORD:
        return False
    if source == ConsentSource.IMPORT:
        return settings.OMNI_CONFIRM_IMPORTED_OPT_INS
    return True


def opt_out_purposes() -> list[str]:
    """The purposes an opt-out (STOP, STOPALL, a carrier's report of one) revokes: all but
    transactional, unless settings.OMNI_OPT_OUT_REVOKES_TRANSACTIONAL adds it."""
    return [purpose for purpose in Purpose.values
            if purpose != Purpose.TRANSACTIONAL or settings.OMNI_OPT_OUT_REVOKES_TRANSACTIONAL]


@transaction.atomic
def record_opt_out(contact, channels: list[str], source: str, *, evidence: dict,
                   actor_label: str = "") -> list[ConsentChange]:
    """Revoke opt_out_purposes() on each of `channels`: a STOP, a STOPALL, a carrier's 21610.

    A purpose already revoked is left as it is. Each change keeps in its evidence the status
    and lawful basis it ended, so a START gives back exactly that (record_opt_back_in).
    """
    current = {
        (channel, purpose): (status, lawful_basis)
        for channel, purpose, status, lawful_basis in Consent.objects.filter(contact=contact, channel__in=channels)
        .values_list("channel", "purpose", "status", "lawful_basis")
    }
    changes = []
    for channel in channels:
        for purpose in opt_out_purposes():
            status, lawful_basis = current.get((channel, purpose), (ConsentStatus.UNKNOWN, ""))
            if status == ConsentStatus.REVOKED:
                continue
            changes.append(record_consent_change(
                contact, channel, purpose, ConsentStatus.REVOKED, source,
                evidence={**evidence, "previous_status": status, "previous_lawful_basis": lawful_basis},
                actor_label=actor_label,
            ))
    return changes


@transaction.atomic
def record_opt_back_in(contact, channel: str, *, address: str = "", evidence: dict,
                       actor_label: str = "") -> list[ConsentChange]:
    """A START on `channel`: give back what opt-outs by keyword or carrier took on that channel.

    Each purpose whose current consent is such a revocation returns to the status it had
    before (granted stays granted; a purpose never granted returns to unknown, so START never
    creates a marketing opt-in that was not given). Revocations by other means (a complaint,
    an unsubscribe link, staff) stand, and so do other channels a STOPALL revoked: a text on
    one channel is no evidence of consent on another. The `stop` suppression of `address` on
    the channel, which a carrier's 21610 left, is lifted: the carrier unblocks it on START too.
    An all-channel `stop` suppression of `address` is narrowed (narrow_suppression): the
    channel opens, every other channel stays suppressed.
    """
    revoked = (Consent.objects.select_for_update(of=("self",)).select_related("last_change")
               .filter(contact=contact, channel=channel, status=ConsentStatus.REVOKED,
                       last_change__source__in=[ConsentSource.KEYWORD, ConsentSource.CARRIER])
               .order_by("purpose"))
    changes = []
    for consent in revoked:
        before = consent.last_change.evidence
        status = before.get("previous_status")
        changes.append(record_consent_change(
            contact, channel, consent.purpose,
            status if status in (ConsentStatus.GRANTED, ConsentStatus.UNKNOWN) else ConsentStatus.UNKNOWN,
            ConsentSource.KEYWORD, evidence={**evidence, "restores": consent.last_change_id},
            lawful_basis=before.get("previous_lawful_basis", ""), actor_label=actor_label,
        ))
    if address:
        address_hash, why = hash_address(address), f"{channel} START keyword"
        # The all-channel stop is locked before the channel's own stop is read: a START on another
        # channel that narrowed it a moment ago has then committed the stop it added for this one.
        for suppression in Suppression.objects.select_for_update().filter(
                address_hash=address_hash, channel="", reason=SuppressionReason.STOP):
            narrow_suppression(suppression, channel, actor_label=actor_label, why=why)
        for suppression in Suppression.objects.filter(address_hash=address_hash, channel=channel,
                                                      reason=SuppressionReason.STOP):
            lift_suppression(suppression, actor_label=actor_label, why=why)
    return changes


def suppress(address: str, *, channel: str = "", purpose: str = "", reason: str, contact=None, detail: str = "",
             actor=None, actor_label: str = "", expires_at=None) -> tuple[Suppression, bool]:
    """Suppress an address for a channel/purpose scope (blank = all). Safe to call twice.

    Returns (suppression, changed). One row per scope: an existing suppression that has
    expired, or that the new one outlasts (a hard bounce after a temporary manual one), is
    renewed with the new reason and expiry ("suppression.renewed"); an active one that lasts
    at least as long is left as it is.
    """
    if reason not in SuppressionReason.values:
        raise ValueError(f"Unknown suppression reason {reason!r}.")
    normalized = (address or "").strip().lower()
    if not normalized:
        raise ValueError("Cannot suppress an empty address.")
    return _suppress(normalized, hash_address(normalized), channel=channel, purpose=purpose, reason=reason,
                     contact=contact, detail=detail, actor=actor, actor_label=actor_label, expires_at=expires_at)


@transaction.atomic
def _suppress(address: str, address_hash: str, *, channel: str, purpose: str, reason: str, contact, detail: str,
              actor, actor_label: str, expires_at, created_at=None) -> tuple[Suppression, bool]:
    """suppress() for an address already normalized, or blank with its hash (an erased address
    stays suppressed by its hash alone)."""
    existing = (
        Suppression.objects.select_for_update()
        .filter(address_hash=address_hash, channel=channel, purpose=purpose).first()
    )
    if existing:
        return _renew_if_outlasted(existing, reason=reason, contact=contact, detail=detail, actor=actor,
                                   actor_label=actor_label, expires_at=expires_at)
    try:
        with transaction.atomic():
            suppression = Suppression.objects.create(
                address=address, address_hash=address_hash, channel=channel, purpose=purpose, reason=reason,
                detail=detail[:500], contact=contact,
                created_by=actor if getattr(actor, "is_authenticated", False) else None,
                expires_at=expires_at, created_at=created_at or timezone.now(),
            )
    except IntegrityError:
        # Another webhook suppressed the same address a moment ago.
        return Suppression.objects.get(address_hash=address_hash, channel=channel, purpose=purpose), False
    personal = {"address": address, "detail": detail[:500]}
    audit.record(
        "suppression.added", contact=contact, obj=suppression, actor=actor, actor_label=actor_label,
        channel=channel, reason=reason, data={"purpose": purpose},
        personal={key: value for key, value in personal.items() if value} or None,
    )
    return suppression, True


def renews(current_expires_at, new_expires_at, now=None) -> bool:
    """Whether a new suppression of a scope already suppressed replaces the one there: when that
    one has expired, or the new one outlasts it (a hard bounce after a temporary manual one)."""
    if current_expires_at is None:
        return False
    expired = current_expires_at <= (now or timezone.now())
    return expired or new_expires_at is None or new_expires_at > current_expires_at


def _renew_if_outlasted(existing: Suppression, *, reason, contact, detail, actor, actor_label,
                        expires_at) -> tuple[Suppression, bool]:
    """Renew a (locked) suppression the new one outlasts; (existing, False) otherwise."""
    if not renews(existing.expires_at, expires_at):
        return existing, False
    now = timezone.now()
    # The details (a provider's error text, a staff note) may name the person: outside the chain.
    previous = {"reason": existing.reason, "created_at": existing.created_at.isoformat(),
                "expires_at": existing.expires_at.isoformat() if existing.expires_at else None}
    personal = {"detail": detail[:500], "previous_detail": existing.detail}
    existing.reason, existing.detail, existing.expires_at, existing.created_at = reason, detail[:500], expires_at, now
    existing.contact = contact or existing.contact
    existing.created_by = actor if getattr(actor, "is_authenticated", False) else None
    existing.save(update_fields=["reason", "detail", "expires_at", "created_at", "contact", "created_by"])
    audit.record(
        "suppression.renewed", contact=existing.contact, obj=existing, actor=actor, actor_label=actor_label,
        channel=existing.channel, reason=reason, data={"purpose": existing.purpose, "previous": previous},
        personal={key: value for key, value in personal.items() if value} or None,
    )
    return existing, True


@transaction.atomic
def lift_suppression(suppression: Suppression, *, actor=None, actor_label: str = "", why: str = "") -> None:
    """Remove a suppression: the address may be messaged again in its scope. `why` (staff's own
    words may name the person) is kept with the entry as personal data, outside the chain."""
    audit.record(
        "suppression.lifted", contact_id=suppression.contact_id, obj=suppression, actor=actor,
        actor_label=actor_label, channel=suppression.channel, reason=suppression.reason,
        data={"purpose": suppression.purpose, "address_hash": suppression.address_hash},
        personal={"why": why} if why else None,
    )
    suppression.delete()


@transaction.atomic
def narrow_suppression(suppression: Suppression, channel: str, *, actor=None, actor_label: str = "",
                       why: str = "") -> list[Suppression]:
    """Take `channel` out of an all-channel suppression: each other channel keeps a suppression
    of its own with the same reason, purpose, contact, detail, start and expiry (a suppression
    that scope already has stays as suppress() leaves it), and the all-channel one is lifted.
    Returns the other channels' suppressions."""
    if suppression.channel:
        raise ValueError("Only an all-channel suppression can be narrowed.")
    if channel not in Channel.values:
        raise ValueError(f"Unknown channel {channel!r}.")
    kept = [
        _suppress(suppression.address, suppression.address_hash, channel=other, purpose=suppression.purpose,
                  reason=suppression.reason, contact=suppression.contact, detail=suppression.detail, actor=actor,
                  actor_label=actor_label, expires_at=suppression.expires_at,
                  created_at=suppression.created_at)[0]
        for other in Channel.values if other != channel
    ]
    lift_suppression(suppression, actor=actor, actor_label=actor_label, why=why)
    return kept


def record_submitted_consents(sender, *, contact, consents: list[dict], source: str, actor_label: str, **kwargs):
    """contacts.hooks.consents_submitted: record each consent sent with a contact."""
    for consent in consents:
        record_consent_change(contact, consent["channel"], consent["purpose"], consent["status"], source,
                              evidence=consent["evidence"], lawful_basis=consent.get("lawful_basis", ""),
                              actor_label=actor_label)


# Changes per upsert statement on SQLite (seven values each, under its limit of bound values).
SQLITE_UPSERT_ROWS = 100
# Looked up once: an enum's .values builds its list at every call.
CHANNELS, PURPOSES = frozenset(Channel.values), frozenset(Purpose.values)
STATUSES, LAWFUL_BASES = frozenset(ConsentStatus.values), frozenset(LawfulBasis.values)


@transaction.atomic
def record_consent_changes_many(changes: list[dict], *, source: str, actor=None, actor_label: str = "",
                                announce: bool | None = None) -> list[int]:
    """record_consent_change() for many contacts at once (an import), in a few statements whatever
    the number of changes; returns the ConsentChange ids, in the order of `changes`.

    Each change is {"contact_id", "channel", "purpose", "status", "lawful_basis", "evidence",
    "occurred_at"}. The same rules hold: every change joins the history; a change older than the
    contact's current consent for its scope (compared with that consent's last change) does not
    replace it, also against a change written meanwhile (the upsert compares in the database);
    double opt-in keeps a grant pending when the source needs it, and an opt-in is announced when
    announces_opt_in() says so (those two send their hooks one change at a time: they make a
    message each). Each change is audited as "consent.changed", its evidence kept as personal data.
    """
    if source not in ConsentSource.values:
        raise ValueError(f"Unknown consent source {source!r}.")
    for change in changes:
        if change["channel"] not in CHANNELS:
            raise ValueError(f"Unknown channel {change['channel']!r}.")
        if change["purpose"] not in PURPOSES:
            raise ValueError(f"Unknown purpose {change['purpose']!r}.")
        if change["status"] not in STATUSES:
            raise ValueError(f"Unknown consent status {change['status']!r}.")
        if change.get("lawful_basis") and change["lawful_basis"] not in LAWFUL_BASES:
            raise ValueError(f"Unknown lawful basis {change['lawful_basis']!r}.")
    if not changes:
        return []
    now = timezone.now()
    actor_id = actor.pk if getattr(actor, "is_authenticated", False) else None
    # The contacts' current consents: (contact, channel, purpose) -> (status, last changed, has a change).
    current = {
        (contact_id, channel, purpose): (status, updated_at, last_change_id is not None)
        for contact_id, channel, purpose, status, updated_at, last_change_id in filter_in(
            Consent.objects.all(), "contact", {change["contact_id"] for change in changes}).values_list(
            "contact_id", "channel", "purpose", "status", "updated_at", "last_change_id")
    }
    # The purposes granted on each (contact, channel): an opt-in is a grant where there was none.
    granted = {}
    for (contact_id, channel, purpose), (status, _, _) in current.items():
        if status == ConsentStatus.GRANTED:
            granted.setdefault((contact_id, channel), set()).add(purpose)
    rows, confirms, opt_ins = [], [], []
    for position, change in enumerate(changes):
        scope = (change["contact_id"], change["channel"], change["purpose"])
        status, evidence = change["status"], change.get("evidence") or {}
        occurred_at = change.get("occurred_at") or now
        before = current.get(scope, (ConsentStatus.UNKNOWN, None, False))
        confirm = (status == ConsentStatus.GRANTED and needs_double_opt_in(change["channel"], change["purpose"], source)
                   and before[0] != ConsentStatus.GRANTED)
        if confirm:
            status = ConsentStatus.PENDING
            evidence = {**evidence, "double_opt_in": {"previous_status": before[0]}}
        opts_in = (status == ConsentStatus.GRANTED and announces_opt_in(source, announce)
                   and not granted.get(scope[:2]))
        is_current = not before[2] or before[1] <= occurred_at
        if is_current:
            current[scope] = (status, occurred_at, True)
            purposes = granted.setdefault(scope[:2], set())
            if status == ConsentStatus.GRANTED:
                purposes.add(scope[2])
            else:
                purposes.discard(scope[2])
        rows.append((change["contact_id"], change["channel"], change["purpose"], status, source,
                     change.get("lawful_basis") or "", evidence, actor_id, actor_label, occurred_at))
        if confirm and is_current:
            confirms.append(position)
        if opts_in and is_current:
            opt_ins.append(position)
    ids = insert_rows(ConsentChange, ["contact_id", "channel", "purpose", "status", "source", "lawful_basis",
                                      "evidence", "actor_id", "actor_label", "occurred_at"], rows, set_ids=True)
    _upsert_current_consents(rows, ids)
    audit.record_many([
        audit.build("consent.changed", contact_id=row[0], object_ref=("compliance.consentchange", str(change_id)),
                    actor=actor, actor_label=actor_label, channel=row[1], reason=f"{source}:{row[3]}",
                    data={"purpose": row[2], "status": row[3], "source": source},
                    personal={"evidence": row[6]} if row[6] else None, occurred_at=now)
        for row, change_id in zip(rows, ids)
    ])
    if confirms or opt_ins:
        made = ConsentChange.objects.select_related("contact").in_bulk([ids[i] for i in {*confirms, *opt_ins}])
        for position in confirms:
            change = made[ids[position]]
            hooks.send(hooks.double_opt_in_requested, contact=change.contact, change=change,
                       confirm_url=confirmation_url(change.contact_id, change.pk))
        for position in opt_ins:
            hooks.send(hooks.opted_in, change=made[ids[position]])
    return ids


def _upsert_current_consents(rows: list[tuple], ids: list[int]) -> None:
    """Make each scope's newest change its current consent, unless the stored consent's last
    change is newer: one INSERT ... ON CONFLICT DO UPDATE ... WHERE per statement, so a change
    another transaction wrote meanwhile is compared too."""
    newest = {}
    for row, change_id in zip(rows, ids):
        scope = row[:3]
        if scope not in newest or newest[scope][6] <= row[9]:
            newest[scope] = (*scope, row[3], row[5], change_id, row[9])
    values = list(newest.values())
    table = connection.ops.quote_name(Consent._meta.db_table)
    columns = "contact_id, channel, purpose, status, lawful_basis, last_change_id, updated_at"
    conflict = (f"ON CONFLICT (contact_id, channel, purpose) DO UPDATE SET status = excluded.status, "
                f"lawful_basis = excluded.lawful_basis, last_change_id = excluded.last_change_id, "
                f"updated_at = excluded.updated_at WHERE {table}.last_change_id IS NULL "
                f"OR {table}.updated_at <= excluded.updated_at")
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"INSERT INTO {table} ({columns}) SELECT * FROM unnest(%s::bigint[], %s::varchar[], %s::varchar[], "
                f"%s::varchar[], %s::varchar[], %s::bigint[], %s::timestamptz[]) {conflict}",
                [list(column) for column in zip(*values)])
            return
        updated_at = Consent._meta.get_field("updated_at")
        for start in range(0, len(values), SQLITE_UPSERT_ROWS):
            part = values[start:start + SQLITE_UPSERT_ROWS]
            cursor.execute(
                f"INSERT INTO {table} ({columns}) VALUES {', '.join(['(%s, %s, %s, %s, %s, %s, %s)'] * len(part))} "
                f"{conflict}",
                [value for row in part for value in (*row[:6], updated_at.get_db_prep_save(row[6], connection))])


def receive_submitted_consents(sender, *, batch: list[dict] | None = None, **kwargs):
    """contacts.hooks.consents_submitted: a batch (an import) goes to record_consent_changes_many,
    one contact's consents (the API) to record_submitted_consents."""
    if batch is None:
        return record_submitted_consents(sender, **kwargs)
    return record_consent_changes_many(batch, source=kwargs["source"], actor=kwargs.get("actor"),
                                       actor_label=kwargs.get("actor_label", ""))
