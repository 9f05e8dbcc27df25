"""What every inbound message is read with: the keyword lists and each channel's service level
and business hours, kept per process and checked for changes in one query at most every
OMNI_INBOUND_SETTINGS_RECHECK_SECONDS (omni.lib.table_cache), so the webhook reads no settings
table itself."""
import logging
from dataclasses import dataclass

from compliance.keywords import NormalizedLists, normalized_lists
from compliance.models import KeywordList
from omni.choices import Channel
from omni.lib.table_cache import TableCache

from .business_hours import ALWAYS_OPEN, Schedule
from .models import BusinessHours, Holiday, OpeningHours, ServiceLevel

log = logging.getLogger(__name__)

# Channels customers write in on: conversations, blocks and service levels exist only for these.
INBOUND_CHANNELS = frozenset({Channel.SMS, Channel.WHATSAPP, Channel.RCS, Channel.EMAIL})


@dataclass(frozen=True)
class InboundSettings:
    # The keyword lists staff edit, normalized once as compliance.keywords.read_keyword reads them.
    keyword_lists: NormalizedLists
    # {channel: (Schedule or None, ServiceLevel or None)}; None for unusable business hours.
    schedules: dict[str, tuple[Schedule | None, ServiceLevel | None]]

    def schedule(self, channel: str) -> tuple[Schedule | None, ServiceLevel | None]:
        """The channel's (Schedule, ServiceLevel): around the clock and none where it has no service level."""
        return self.schedules.get(channel, (ALWAYS_OPEN, None))


def _load() -> InboundSettings:
    return InboundSettings(normalized_lists(KeywordList.objects.parser_lists()), configured_schedules(INBOUND_CHANNELS))


def configured_schedules(channels) -> dict[str, tuple[Schedule | None, ServiceLevel | None]]:
    """Each channel's (Schedule, ServiceLevel) as configured: ALWAYS_OPEN where the channel has
    no service level or its service level no business hours. Business hours that cannot make a
    schedule (no opening hours at all) must not lose a customer's message: that channel counts
    no due times, (None, None), and says why in the log. At most three queries."""
    found = {channel: (ALWAYS_OPEN, None) for channel in channels}
    levels = (ServiceLevel.objects.filter(channel__in=found).select_related("business_hours")
              .prefetch_related("business_hours__openings", "business_hours__holidays"))
    for level in levels:
        try:
            found[level.channel] = (level.business_hours.schedule() if level.business_hours else ALWAYS_OPEN, level)
        except ValueError as problem:
            log.warning("The business hours of %s's service level are unusable: %s", level.channel, problem)
            found[level.channel] = (None, None)
    return found


_cache = TableCache(_load, KeywordList, ServiceLevel, BusinessHours, OpeningHours, Holiday,
                    recheck_seconds="OMNI_INBOUND_SETTINGS_RECHECK_SECONDS")


def inbound_settings() -> InboundSettings:
    return _cache.get()


def forget_inbound_settings() -> None:
    _cache.clear()


def schedules_of(channels) -> dict[str, tuple[Schedule | None, ServiceLevel | None]]:
    """Each channel's InboundSettings.schedule(); one query, however many channels."""
    current = inbound_settings()
    return {channel: current.schedule(channel) for channel in channels}


def schedule_of(channel: str) -> tuple[Schedule | None, ServiceLevel | None]:
    return schedules_of([channel])[channel]
