"""How support is doing: figures per channel and per agent for a period of days, and their CSV.

A conversation counts in a period for what happened in it then:
- opened: its opened_at falls in the period;
- first response: its first_response_at does (times real and in business hours, and whether the
  business time kept within its channel's ServiceLevel.first_response_minutes);
- closed: its closed_at does (resolution times against resolution_minutes, resolved by automation,
  a repeat contact, the satisfaction answer).
An agent's figures are those of the conversations assigned to them (none: "Unassigned").
Each reader sees the figures and exports of the conversations they may see: an agent limited to
their queues and their own (channels.support_access) sees those alone.

A repeat contact is a conversation closed in the period after which the same contact opened
another on the same channel within REPEAT_WINDOW (looked for up to now, so for the period's last
days the window may still be running).

Counted in the database in four queries whatever the rows: the service levels; the counts per
channel and agent (which add up to each table's rows and the total); the repeat contacts, apart,
so that their per-row lookup runs only for the conversations closed in the period; and the
percentiles: on PostgreSQL PERCENTILE_CONT per table in one UNION ALL, elsewhere the period's time
columns alone, with percentile() doing the same interpolation in Python.
"""
import csv
import io
import math
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Iterable, Iterator

from django import forms
from django.db import connection
from django.db.models import (Aggregate, Case, CharField, Count, DateTimeField, Exists, ExpressionWrapper, F,
                              FloatField, IntegerField, OuterRef, Q, QuerySet, Sum, Value, When)
from django.db.models.functions import Cast, Coalesce
from django.db.models.lookups import IsNull, LessThanOrEqual
from django.utils import timezone

from channels.models import Conversation, ResolvedBy, ServiceLevel
from channels.support_access import conversations_for
from omni import audit
from omni.choices import Channel
from omni.lib.spreadsheet import neutralize_formula

VIEW_PERMISSION = "channels.view_conversation"
DEFAULT_DAYS = 7
PRESET_DAYS = (7, 30, 90)
REPEAT_WINDOW = timedelta(days=7)
SATISFIED_FROM = 4  # answers of 4 and 5 count as satisfied
MAX_DAYS = 366  # a year and a day: what one page is for; longer periods are several exports
EXPORT_CHUNK_SIZE = 2000  # conversation rows fetched per round trip; tags looked up once per chunk
UNASSIGNED = "Unassigned"
# Name, when it happens, its real seconds, its business seconds, its limit's field on ServiceLevel.
SERIES = (
    ("first_response", "first_response_at", "first_response_seconds", "first_response_business_seconds",
     "first_response_minutes"),
    ("resolution", "closed_at", "resolution_seconds", "resolution_business_seconds", "resolution_minutes"),
)
MEDIAN, P90 = 0.5, 0.9


def may_see_figures(user) -> bool:
    """Support agents, compliance staff and administrators: those who may view conversations."""
    return user.has_perm(VIEW_PERMISSION)


@dataclass(frozen=True)
class Period:
    """Whole days, first and last included, in the current time zone."""

    first_day: date
    last_day: date

    @classmethod
    def last_days(cls, days: int = DEFAULT_DAYS, today: date | None = None) -> "Period":
        today = today or timezone.localdate()
        return cls(today - timedelta(days=days - 1), today)

    @property
    def start(self) -> datetime:
        return timezone.make_aware(datetime.combine(self.first_day, time.min))

    @property
    def end(self) -> datetime:
        """The first moment after the period."""
        return timezone.make_aware(datetime.combine(self.last_day + timedelta(days=1), time.min))

    def during(self, field_name: str) -> Q:
        return Q(**{f"{field_name}__gte": self.start, f"{field_name}__lt": self.end})

    def holds(self, moment: datetime | None) -> bool:
        return moment is not None and self.start <= moment < self.end


class PeriodForm(forms.Form):
    """The date range picker: first and last day, both included."""

    start = forms.DateField(label="From", widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"))
    end = forms.DateField(label="To", widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"))

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("start"), cleaned.get("end")
        if start and end:
            if end < start:
                raise forms.ValidationError(
                    "The period ends before it starts: choose a last day on or after the first.")
            if (end - start).days + 1 > MAX_DAYS:
                raise forms.ValidationError(f"Choose at most {MAX_DAYS} days; for longer, export several periods.")
        return cleaned

    @property
    def period(self) -> Period:
        return Period(self.cleaned_data["start"], self.cleaned_data["end"])


def period_form(query, today: date | None = None) -> PeriodForm:
    """The form for a request's query string; without a period in it, the last DEFAULT_DAYS days."""
    if "start" in query or "end" in query:
        return PeriodForm(query)
    default = Period.last_days(DEFAULT_DAYS, today)
    return PeriodForm({"start": default.first_day.isoformat(), "end": default.last_day.isoformat()})


@dataclass
class Share:
    part: int
    whole: int

    @property
    def fraction(self) -> float | None:
        return self.part / self.whole if self.whole else None

    @property
    def text(self) -> str:
        return f"{self.fraction:.0%} ({self.part} of {self.whole})" if self.whole else "—"

    @property
    def percent_text(self) -> str:
        return f"{self.fraction:.0%}" if self.whole else "—"

    @property
    def count_text(self) -> str:
        return f"{self.part} of {self.whole}"


@dataclass
class Times:
    """Median and 90th percentile, in seconds, of one time of one row."""

    median: float | None = None
    p90: float | None = None

    @property
    def median_text(self) -> str:
        return duration_text(self.median)

    @property
    def p90_text(self) -> str:
        return duration_text(self.p90)


@dataclass
class Measure:
    """First response or resolution: how many, how long really and in business hours, and how many
    kept within the service level (`within.whole`: those on a channel with one)."""

    count: int = 0
    real: Times = field(default_factory=Times)
    business: Times = field(default_factory=Times)
    within: Share = field(default_factory=lambda: Share(0, 0))


@dataclass
class Row:
    key: str  # the channel, the agent's id, or "" (the total; unassigned in the agents' table)
    label: str
    conversations: int = 0  # opened, first answered or closed in the period
    opened: int = 0
    closed: int = 0
    first_response: Measure = field(default_factory=Measure)
    resolution: Measure = field(default_factory=Measure)
    by_automation: Share = field(default_factory=lambda: Share(0, 0))
    repeat_contacts: Share = field(default_factory=lambda: Share(0, 0))
    satisfaction_average: float | None = None
    satisfaction_answers: int = 0
    satisfied: Share = field(default_factory=lambda: Share(0, 0))

    @property
    def measures(self) -> tuple[Measure, Measure]:
        return self.first_response, self.resolution

    @property
    def satisfaction_text(self) -> str:
        return "—" if self.satisfaction_average is None else f"{self.satisfaction_average:.2f}"


@dataclass
class Figures:
    period: Period
    total: Row
    by_channel: list[Row]
    by_agent: list[Row]
    service_levels: dict[str, ServiceLevel]

    @property
    def empty(self) -> bool:
        return not self.total.conversations

    @property
    def service_level_texts(self) -> list[str]:
        return [f"{level.get_channel_display()}: first response {duration_text(level.first_response_minutes * 60)}, "
                f"resolution {duration_text(level.resolution_minutes * 60)}"
                for _, level in sorted(self.service_levels.items(), key=lambda item: _channel_order(item[0]))]


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def percentile(ordered: list[float], fraction: float) -> float | None:
    """PostgreSQL's PERCENTILE_CONT over values in ascending order: linear interpolation between
    the two nearest ranks (statistics.quantiles refuses a single value before Python 3.13)."""
    if not ordered:
        return None
    position = fraction * (len(ordered) - 1)
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    return float(ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower))


class PercentileCont(Aggregate):
    """PERCENTILE_CONT(fraction) WITHIN GROUP (ORDER BY expression): PostgreSQL's ordered-set aggregate."""

    function = "PERCENTILE_CONT"
    name = "PercentileCont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression, fraction: float, **extra):
        if not 0 <= fraction <= 1:
            raise ValueError(f"fraction must be between 0 and 1, not {fraction!r}")
        super().__init__(expression, fraction=repr(float(fraction)), **extra)


def _limit_seconds(service_levels: dict[str, ServiceLevel], minutes_field: str):
    """Each conversation's limit in business seconds, from its channel's service level (NULL: none)."""
    return Case(*[When(channel=channel, then=Value(getattr(level, minutes_field) * 60))
                  for channel, level in service_levels.items()],
                default=Value(None), output_field=IntegerField())


def _followed_within_window():
    """The contact opened another conversation on the same channel within REPEAT_WINDOW of this one closing."""
    window_end = ExpressionWrapper(OuterRef("closed_at") + REPEAT_WINDOW, output_field=DateTimeField())
    return Exists(Conversation.objects.filter(
        contact_id=OuterRef("contact_id"), channel=OuterRef("channel"),
        opened_at__gte=OuterRef("closed_at"), opened_at__lte=window_end,
    ).exclude(pk=OuterRef("pk")))


def _visible_to(reader) -> QuerySet:
    return conversations_for(reader) if reader is not None else Conversation.objects.all()


def _in_period(period: Period, visible: QuerySet):
    return visible.filter(
        period.during("opened_at") | period.during("first_response_at") | period.during("closed_at")
    ).order_by()


def _counts(period: Period, service_levels: dict[str, ServiceLevel]) -> dict:
    """Counts per channel and agent; they add up to each table's rows and the total."""
    closed = period.during("closed_at")
    counts = {
        "conversations": Count("pk"),
        "opened": Count("pk", filter=period.during("opened_at")),
        "closed": Count("pk", filter=closed),
        "by_automation": Count("pk", filter=closed & Q(resolved_by=ResolvedBy.AUTOMATION)),
        "satisfaction_sum": Sum("satisfaction", filter=closed),
        "satisfaction_answers": Count("satisfaction", filter=closed),
        "satisfied": Count("pk", filter=closed & Q(satisfaction__gte=SATISFIED_FROM)),
    }
    for name, at, real, business, minutes_field in SERIES:
        happened = period.during(at)
        limit = _limit_seconds(service_levels, minutes_field)
        counts[f"{name}_count"] = Count("pk", filter=happened & Q(**{f"{real}__isnull": False}))
        counts[f"{name}_measured"] = Count("pk", filter=happened & Q(**{f"{business}__isnull": False})
                                           & Q(IsNull(limit, False)))
        counts[f"{name}_within"] = Count("pk", filter=happened & Q(LessThanOrEqual(F(business), limit)))
    return counts


ADDED_UP = ["conversations", "opened", "closed", "by_automation", "repeat_contacts", "satisfaction_sum",
            "satisfaction_answers", "satisfied",
            *(f"{name}_{count}" for name, *_ in SERIES for count in ("count", "measured", "within"))]
TOTAL = ("total", "")


def _repeat_contacts(period: Period, visible: QuerySet) -> dict[tuple[str, int | None], int]:
    """Conversations closed in the period that were followed by another, per channel and agent: a
    query of its own, so the per-row lookup runs only for those closed in the period."""
    repeated = (visible.filter(period.during("closed_at")).filter(_followed_within_window()).order_by()
                .values("channel", "assignee_id").annotate(n=Count("pk")))
    return {(values["channel"], values["assignee_id"]): values["n"] for values in repeated}


def _percentile_columns() -> Iterator[tuple[str, str, str, float]]:
    """(result name, when it happens, the column, the fraction) of each percentile shown."""
    for name, at, real, business, _ in SERIES:
        for kind, column in (("real", real), ("business", business)):
            for statistic, fraction in (("median", MEDIAN), ("p90", P90)):
                yield f"{name}_{kind}_{statistic}", at, column, fraction


def _percentiles_in_sql(period: Period, visible: QuerySet) -> dict[tuple[str, str], dict]:
    """PERCENTILE_CONT for the total, each channel and each agent, in one query (three grouped
    SELECTs joined by UNION ALL)."""
    columns = {result: PercentileCont(column, fraction, filter=period.during(at))
               for result, at, column, fraction in _percentile_columns()}
    conversations = _in_period(period, visible)
    agent_key = Coalesce(Cast("assignee_id", CharField()), Value(""))
    parts = [conversations.annotate(table=Value(table), key=key).values("table", "key").annotate(**columns)
             for table, key in (("total", Value("")), ("channel", F("channel")), ("agent", agent_key))]
    return {(values["table"], values["key"]): values for values in parts[0].union(*parts[1:], all=True)}


def _percentiles_in_python(period: Period, visible: QuerySet) -> dict[tuple[str, str], dict]:
    """The same as _percentiles_in_sql, from one query for the period's time columns alone."""
    samples: dict[tuple[str, str], dict[str, list]] = {}
    wanted = list(_percentile_columns())
    columns = sorted({column for _, _, column, _ in wanted} | {at for _, at, _, _ in wanted})
    for channel, assignee_id, *times in _in_period(period, visible).values_list(
            "channel", "assignee_id", *columns).iterator(chunk_size=EXPORT_CHUNK_SIZE):
        values = dict(zip(columns, times))
        for row_key in (TOTAL, ("channel", channel), ("agent", str(assignee_id or ""))):
            row_samples = samples.setdefault(row_key, {})
            for result, at, column, _ in wanted:
                if values[column] is not None and period.holds(values[at]):
                    row_samples.setdefault(result, []).append(values[column])
    return {row_key: {result: percentile(sorted(row_samples.get(result, [])), fraction)
                      for result, _, _, fraction in wanted}
            for row_key, row_samples in samples.items()}


def _row(key: str, label: str, values: dict, percentiles: dict) -> Row:
    closed, answers = values["closed"], values["satisfaction_answers"]
    row = Row(
        key=key, label=label, conversations=values["conversations"], opened=values["opened"], closed=closed,
        by_automation=Share(values["by_automation"], closed),
        repeat_contacts=Share(values["repeat_contacts"], closed),
        satisfaction_average=values["satisfaction_sum"] / answers if answers else None,
        satisfaction_answers=answers,
        satisfied=Share(values["satisfied"], answers),
    )
    for name, *_ in SERIES:
        setattr(row, name, Measure(
            count=values[f"{name}_count"],
            real=Times(percentiles.get(f"{name}_real_median"), percentiles.get(f"{name}_real_p90")),
            business=Times(percentiles.get(f"{name}_business_median"), percentiles.get(f"{name}_business_p90")),
            within=Share(values[f"{name}_within"], values[f"{name}_measured"]),
        ))
    return row


def _channel_label(channel: str) -> str:
    return Channel(channel).label if channel in Channel.values else channel


def _channel_order(channel: str) -> int:
    """The order of the channels' choices; one no longer among them last."""
    return Channel.values.index(channel) if channel in Channel.values else len(Channel.values)


def _agent_label(values: dict) -> str:
    if values["assignee_id"] is None:
        return UNASSIGNED
    full_name = f"{values['assignee__first_name']} {values['assignee__last_name']}".strip()
    return full_name or values["assignee__username"]


def figures_for(period: Period, reader=None) -> Figures:
    """The period's figures per channel, per agent and in total (see the module's docstring), of
    the conversations `reader` may see (channels.support_access; all without a reader)."""
    visible = _visible_to(reader)
    service_levels = {level.channel: level for level in ServiceLevel.objects.all()}
    groups = _in_period(period, visible).values("channel", "assignee_id", "assignee__username", "assignee__first_name",
                                       "assignee__last_name").annotate(**_counts(period, service_levels))
    repeats = _repeat_contacts(period, visible)
    # Each (channel, agent) group adds up into its channel's row, its agent's row and the total.
    tallies: dict[tuple[str, str], dict] = {TOTAL: {"label": "All conversations", **dict.fromkeys(ADDED_UP, 0)}}
    for group in groups:
        group["repeat_contacts"] = repeats.get((group["channel"], group["assignee_id"]), 0)
        for row_key, label in ((TOTAL, ""), (("channel", group["channel"]), _channel_label(group["channel"])),
                               (("agent", str(group["assignee_id"] or "")), _agent_label(group))):
            tally = tallies.setdefault(row_key, {"label": label, **dict.fromkeys(ADDED_UP, 0)})
            for name in ADDED_UP:
                tally[name] += group[name] or 0
    percentiles = (_percentiles_in_sql if connection.vendor == "postgresql" else _percentiles_in_python)(period, visible)
    rows = {row_key: _row(row_key[1], tally["label"], tally, percentiles.get(row_key, {}))
            for row_key, tally in tallies.items()}
    by_channel = sorted((row for (table, _), row in rows.items() if table == "channel"),
                        key=lambda row: _channel_order(row.key))
    by_agent = sorted((row for (table, _), row in rows.items() if table == "agent"),
                      key=lambda row: (row.key == "", row.label.casefold(), row.key))
    return Figures(period, rows[TOTAL], by_channel, by_agent, service_levels)


# --- CSV ---------------------------------------------------------------------------------------

FIGURES_HEADER = [
    "period_first_day", "period_last_day", "table", "key", "name", "opened", "closed",
    "first_responses", "first_response_median_s", "first_response_p90_s",
    "first_response_business_median_s", "first_response_business_p90_s",
    "first_response_within_service_level", "first_response_measured_against_service_level",
    "first_response_within_service_level_share",
    "resolutions", "resolution_median_s", "resolution_p90_s", "resolution_business_median_s",
    "resolution_business_p90_s", "resolution_within_service_level", "resolution_measured_against_service_level",
    "resolution_within_service_level_share",
    "resolved_by_automation", "resolved_by_automation_share", "repeat_contacts_7_days", "repeat_contacts_share",
    "satisfaction_average", "satisfaction_answers", "satisfied_4_or_5", "satisfied_share",
]


def _number(value, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _figure_cells(period: Period, table: str, row: Row) -> list:
    cells = [period.first_day, period.last_day, table, row.key, row.label, row.opened, row.closed]
    for measure in (row.first_response, row.resolution):
        cells += [measure.count, _number(measure.real.median, 1), _number(measure.real.p90, 1),
                  _number(measure.business.median, 1), _number(measure.business.p90, 1),
                  measure.within.part, measure.within.whole, _number(measure.within.fraction, 4)]
    cells += [row.by_automation.part, _number(row.by_automation.fraction, 4),
              row.repeat_contacts.part, _number(row.repeat_contacts.fraction, 4),
              _number(row.satisfaction_average, 2), row.satisfaction_answers,
              row.satisfied.part, _number(row.satisfied.fraction, 4)]
    return cells


def figures_csv(figures: Figures) -> str:
    """The figures as one CSV: the total, then a row per channel, then a row per agent."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(FIGURES_HEADER)
    rows = [("total", figures.total)] + [("channel", row) for row in figures.by_channel] + [
        ("agent", row) for row in figures.by_agent]
    for table, row in rows:
        writer.writerow([neutralize_formula(cell) for cell in _figure_cells(figures.period, table, row)])
    return out.getvalue()


CONVERSATIONS_HEADER = [
    "conversation_id", "contact_id", "channel", "status", "agent", "queue", "tags", "opened_at", "first_response_at",
    "closed_at", "resolved_by", "first_response_s", "first_response_business_s", "first_response_within_service_level",
    "resolution_s", "resolution_business_s", "resolution_within_service_level", "repeat_contact_7_days",
    "satisfaction",
]
_CONVERSATION_COLUMNS = [
    "pk", "contact_id", "channel", "status", "assignee__username", "queue__name", "opened_at", "first_response_at",
    "closed_at", "resolved_by", "first_response_seconds", "first_response_business_seconds", "resolution_seconds",
    "resolution_business_seconds", "repeat", "satisfaction",
]


class _Echo:
    """A file-like object whose write() hands the line back, so csv.writer can stream."""

    def write(self, value):
        return value


def count_conversations(period: Period, reader=None) -> int:
    return _in_period(period, _visible_to(reader)).count()


def conversations_csv_lines(period: Period, reader=None) -> Iterator[str]:
    """One CSV row per conversation opened, first answered or closed in the period, oldest first:
    a query for the service levels, one for the rows and one per EXPORT_CHUNK_SIZE rows for their tags."""
    writer = csv.writer(_Echo())
    yield writer.writerow(CONVERSATIONS_HEADER)
    service_levels = {level.channel: level for level in ServiceLevel.objects.all()}
    rows = (_in_period(period, _visible_to(reader)).annotate(repeat=_followed_within_window()).order_by("opened_at", "pk")
            .values_list(*_CONVERSATION_COLUMNS))
    chunk = []
    for row in rows.iterator(chunk_size=EXPORT_CHUNK_SIZE):
        chunk.append(dict(zip(_CONVERSATION_COLUMNS, row)))
        if len(chunk) == EXPORT_CHUNK_SIZE:
            yield from _conversation_chunk(writer, chunk, period, service_levels)
            chunk = []
    yield from _conversation_chunk(writer, chunk, period, service_levels)


def _within(business_seconds, level: ServiceLevel | None, minutes_field: str) -> str:
    if business_seconds is None or level is None:
        return ""
    return "yes" if business_seconds <= getattr(level, minutes_field) * 60 else "no"


def _conversation_chunk(writer, chunk: list[dict], period: Period, service_levels: dict) -> Iterator[str]:
    if not chunk:
        return
    tags: dict[int, list[str]] = {}
    links = (Conversation.tags.through.objects.filter(conversation_id__in=[r["pk"] for r in chunk])
             .order_by("conversationtag__name").values_list("conversation_id", "conversationtag__name"))
    for conversation_id, name in links:
        tags.setdefault(conversation_id, []).append(name)
    for r in chunk:
        level = service_levels.get(r["channel"])
        closed_in_period = period.holds(r["closed_at"])
        cells = [
            r["pk"], r["contact_id"], r["channel"], r["status"], r["assignee__username"], r["queue__name"],
            ", ".join(tags.get(r["pk"], [])), r["opened_at"], r["first_response_at"], r["closed_at"], r["resolved_by"],
            r["first_response_seconds"], r["first_response_business_seconds"],
            _within(r["first_response_business_seconds"], level, "first_response_minutes"),
            r["resolution_seconds"], r["resolution_business_seconds"],
            _within(r["resolution_business_seconds"], level, "resolution_minutes"),
            ("yes" if r["repeat"] else "no") if closed_in_period else "",
            r["satisfaction"],
        ]
        yield writer.writerow([neutralize_formula(cell) for cell in cells])


# --- Export ------------------------------------------------------------------------------------

FIGURES, CONVERSATIONS = "figures", "conversations"
EXPORTS = (FIGURES, CONVERSATIONS)


@dataclass
class Export:
    filename: str
    lines: Iterable[str]


def export(period: Period, *, rows: str, actor) -> Export:
    """The CSV of the period's figures (rows=FIGURES) or of its conversations one per row
    (rows=CONVERSATIONS), audited as `support.figures_exported` with who asked and for what."""
    if rows not in EXPORTS:
        raise ValueError(f"rows must be one of {', '.join(EXPORTS)}, not {rows!r}")
    scope = {"first_day": period.first_day.isoformat(), "last_day": period.last_day.isoformat(), "rows": rows}
    if rows == CONVERSATIONS:
        audit.record("support.figures_exported", actor=actor, reason="support-figures-csv",
                     data={**scope, "conversations": count_conversations(period, actor)})
        lines = conversations_csv_lines(period, actor)
    else:
        figures = figures_for(period, actor)
        audit.record("support.figures_exported", actor=actor, reason="support-figures-csv",
                     data={**scope, "conversations": figures.total.conversations})
        lines = [figures_csv(figures)]
    return Export(f"omni-support-{rows}-{period.first_day:%Y%m%d}-{period.last_day:%Y%m%d}.csv", lines)
