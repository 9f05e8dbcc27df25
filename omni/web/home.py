"""Each role's home (/admin/): a panel per role the user holds, told by their permissions (a
superuser sees all), each figure linking to the list filtered to it.

Every figure is one query over an index, capped: COUNT over at most CAP + 1 rows, shown as
"10,000+" beyond, so a home stays fast whatever the tables hold.
"""
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlencode

from django.db.models import Count, Min, Q, Subquery
from django.urls import reverse
from django.utils import timezone

from campaigns.models import LIVE_ENROLLMENT_STATES, Campaign, Enrollment, EnrollmentState, Journey, JourneyStatus
from channels.models import Conversation, ConversationStatus, Delivery, DeliveryStatus, InboundMessage, Message
from channels.support_access import conversations_for
from compliance.models import Decision, DecisionOutcome
from contacts.models import ContactEvent
from omni.choices import send_queue
from omni.lib.admin import is_administrator
from omni.models import AuditEntry

from . import inbox

CAP = 10_000
JOURNEYS_SHOWN = 20
TOP_ERROR_CODES = 3
# Deliveries that ended in failure, for "failed in the last hour".
FAILED_STATUSES = (DeliveryStatus.FAILED, DeliveryStatus.BOUNCED, DeliveryStatus.UNDELIVERED)


@dataclass
class Figure:
    label: str
    value: int | None
    url: str = ""
    note: str = ""

    @property
    def shown(self) -> str:
        if self.value is None:
            return "—"
        return f"{CAP:,}+" if self.value > CAP else f"{self.value:,}"


@dataclass
class Panel:
    role: str
    title: str
    figures: list[Figure] = field(default_factory=list)


def capped_count(queryset) -> int:
    """COUNT(*) over at most CAP + 1 rows: one query, which stops reading at the cap."""
    return queryset.order_by().values("pk")[: CAP + 1].count()


def list_url(model, **filters) -> str:
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    return f"{url}?{urlencode(filters)}" if filters else url


def inbox_url(**filters) -> str:
    return f"{reverse('omni-web:inbox')}?{urlencode(filters)}"


def _stamp(moment: datetime) -> str:
    # To the microsecond: a link cut to the second lists rows its figure did not count (or the
    # other way round) for whatever fell in that second.
    return timezone.localtime(moment).isoformat(sep=" ", timespec="microseconds")


def _age(since: datetime | None, now: datetime) -> str:
    if since is None:
        return ""
    seconds = int((now - since).total_seconds())
    if seconds < 120:
        return f"oldest {seconds} s"
    if seconds < 7200:
        return f"oldest {seconds // 60} min"
    return f"oldest {seconds // 3600} h"


def marketing_panel(now) -> Panel:
    panel = Panel("marketing", "Marketing")
    journeys = (Journey.objects.filter(status=JourneyStatus.ACTIVE)
                .annotate(live=Count("enrollments", filter=Q(enrollments__state__in=LIVE_ENROLLMENT_STATES)))
                .order_by("name")[:JOURNEYS_SHOWN])
    for journey in journeys:
        panel.figures.append(Figure(f"{journey.name}: contacts in the journey", journey.live,
                                    list_url(Enrollment, journey__id__exact=journey.pk,
                                             state__in=",".join(LIVE_ENROLLMENT_STATES))))
    if not journeys:
        panel.figures.append(Figure("Active journeys", 0, list_url(Journey, status__exact=JourneyStatus.ACTIVE)))
    panel.figures.append(Figure("Campaigns awaiting approval",
                                capped_count(Campaign.objects.filter(approval_requested_at__isnull=False,
                                                                     approved_at__isnull=True)),
                                list_url(Campaign, approval="awaiting")))
    return panel


def support_panel(user, now) -> Panel:
    panel = Panel("support", "Support")
    # Counted as the list they link to shows them: OMNI_SUPPORT_AGENTS_SEE_ALL may narrow both.
    open_ones = conversations_for(user, Conversation.objects.filter(status=ConversationStatus.OPEN))
    panel.figures.append(Figure("Open conversations", capped_count(open_ones),
                                inbox_url(status=ConversationStatus.OPEN, tab=inbox.ALL)))
    panel.figures.append(Figure("Unassigned", capped_count(open_ones.filter(assignee__isnull=True)),
                                inbox_url(status=ConversationStatus.OPEN, tab=inbox.UNASSIGNED)))
    if user.has_perm("channels.view_inboundmessage"):
        since = now - timedelta(hours=24)
        panel.figures.append(Figure("Inbound messages, last 24 h",
                                    capped_count(InboundMessage.objects.filter(received_at__gte=since)),
                                    list_url(InboundMessage, received_at__gte=_stamp(since))))
    return panel


def compliance_panel(user, now) -> Panel:
    panel = Panel("compliance", "Compliance")
    if user.has_perm("compliance.view_decision"):
        midnight = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
        for outcome, label in ((DecisionOutcome.SUPPRESS, "Suppressed today"), (DecisionOutcome.DEFER, "Deferred today")):
            panel.figures.append(Figure(label, capped_count(Decision.objects.filter(decided_at__gte=midnight, outcome=outcome)),
                                        list_url(Decision, outcome__exact=outcome, decided_at__gte=_stamp(midnight))))
    if user.has_perm("omni.view_auditentry"):
        panel.figures.append(Figure("Audit entries waiting to be sealed",
                                    capped_count(AuditEntry.objects.filter(seq__isnull=True)),
                                    list_url(AuditEntry, seq__isnull="True")))
        last = AuditEntry.objects.filter(action="audit.verified").order_by("-id").first()
        if last is None:
            panel.figures.append(Figure("Last verification of the audit chain", None, note="never run"))
        else:
            intact = (last.data or {}).get("intact")
            problems = "; ".join((last.data or {}).get("problems") or [])
            note = (f"{'intact' if intact else 'BROKEN'}, {(last.data or {}).get('checked', 0):,} entries checked, "
                    f"{timezone.localtime(last.occurred_at):%Y-%m-%d %H:%M}" + (f": {problems}" if problems else ""))
            panel.figures.append(Figure("Last verification of the audit chain", None,
                                        list_url(AuditEntry, action__exact="audit.verified"), note=note))
    return panel


def administrators_panel(now) -> Panel:
    panel = Panel("administrators", "Administrators")
    # Queued deliveries per send queue: one grouped query over at most CAP + 1 queued rows.
    capped_queued = Delivery.objects.filter(status=DeliveryStatus.QUEUED).order_by().values("pk")[: CAP + 1]
    lanes = {}
    for row in (Delivery.objects.filter(pk__in=Subquery(capped_queued)).order_by()
                .values("channel", "message__purpose").annotate(n=Count("pk"), oldest=Min("queued_at"))):
        queue = send_queue(row["message__purpose"], row["channel"])
        n, oldest = lanes.get(queue, (0, None))
        lanes[queue] = (n + row["n"], min(filter(None, [oldest, row["oldest"]])))
    for queue, (n, oldest) in sorted(lanes.items()):
        channel = queue.rsplit(".", 1)[1]
        panel.figures.append(Figure(f"Queued on {queue}", n, list_url(Delivery, status__exact="queued", channel__exact=channel),
                                    note=_age(oldest, now)))
    if not lanes:
        panel.figures.append(Figure("Queued deliveries", 0, list_url(Delivery, status__exact="queued")))
    # Neither claimed (a worker runs them) nor quarantined (counted below): as the list shows them.
    panel.figures.append(Figure("Enrollments due", capped_count(Enrollment.objects.filter(
        state=EnrollmentState.ACTIVE, claimed_at__isnull=True, quarantined_at__isnull=True, next_run_at__lte=now)),
        list_url(Enrollment, state__exact="active", claimed_at__isnull="True", quarantined="no",
                 next_run_at__lte=_stamp(now))))
    panel.figures.append(Figure("Events not yet processed", capped_count(ContactEvent.objects.filter(processed_at__isnull=True)),
                                list_url(ContactEvent, processed_at__isnull="True")))
    panel.figures.append(Figure("Uncertain deliveries", capped_count(Delivery.objects.filter(status=DeliveryStatus.UNCERTAIN)),
                                list_url(Delivery, status__exact=DeliveryStatus.UNCERTAIN)))
    for model in (ContactEvent, Enrollment, Message, Delivery, InboundMessage):
        panel.figures.append(Figure(f"Quarantined {model._meta.verbose_name_plural}",
                                    capped_count(model.objects.filter(quarantined_at__isnull=False)),
                                    list_url(model, quarantined="yes")))
    # Failed in the last hour per provider, with the most frequent error codes: one grouped query.
    since = now - timedelta(hours=1)
    by_provider: dict[str, list[tuple[int, str]]] = {}
    for row in (Delivery.objects.filter(failed_at__gte=since, status__in=FAILED_STATUSES).order_by()
                .values("provider", "error_code").annotate(n=Count("pk"))):
        by_provider.setdefault(row["provider"], []).append((row["n"], row["error_code"] or "no code"))
    for provider, codes in sorted(by_provider.items()):
        codes.sort(reverse=True)
        top = ", ".join(f"{code} ({n})" for n, code in codes[:TOP_ERROR_CODES])
        panel.figures.append(Figure(f"Failed on {provider}, last hour", sum(n for n, _ in codes),
                                    list_url(Delivery, provider__exact=provider, failed_at__gte=_stamp(since)), note=top))
    if not by_provider:
        panel.figures.append(Figure("Failed deliveries, last hour", 0, list_url(Delivery, failed_at__gte=_stamp(since))))
    return panel


def panels_for(user, now=None) -> list[Panel]:
    """The panels of the roles `user` holds, by permission (a superuser holds them all)."""
    now = now or timezone.now()
    panels = []
    if user.has_perm("campaigns.view_journey") and user.has_perm("contacts.change_contact"):
        panels.append(marketing_panel(now))
    if user.has_perm("channels.change_conversation"):
        panels.append(support_panel(user, now))
    if user.has_perm("compliance.view_decision") and user.has_perm("omni.export_auditentry"):
        panels.append(compliance_panel(user, now))
    if is_administrator(user):
        panels.append(administrators_panel(now))
    return panels


def dashboard_callback(request, context):
    """Unfold's DASHBOARD_CALLBACK: the home's panels for this user."""
    context["panels"] = panels_for(request.user)
    return context
