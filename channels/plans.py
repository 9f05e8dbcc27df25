"""Channel plans: the channels a message tries in order, each with when to move on to the next.

[{"channel": "email", "fallback_after_seconds": 3600, "fallback_unless": "engaged"}, {"channel": "sms"}]

Routing reads a plan long after someone wrote it (the tick, a fallback timer), where a typo can
only fail the message. So plans are checked where they are written: the step form and
publishing a journey call channel_plan_problems().
"""
from omni.choices import Channel

# What a plan entry may say. fallback_unless: what the delivery must reach before its fallback
# timer ends for the message to stay on this channel.
PLAN_SETTINGS = ("channel", "fallback_after_seconds", "fallback_unless")
FALLBACK_CONDITIONS = ("delivered", "engaged")
# A month: longer than any provider keeps trying, and far below what a datetime can add.
MAX_FALLBACK_SECONDS = 30 * 24 * 3600


def channel_plan_problems(plan, field: str = "channel_plan") -> list[str]:
    """What is wrong with a channel plan, each naming the entry and setting at fault
    ("channel_plan[0].chanel ..."); empty when routing can follow it."""
    if not isinstance(plan, list) or not plan:
        return [f'{field} must be a list of at least one channel, e.g. [{{"channel": "email"}}].']
    problems = []
    for index, entry in enumerate(plan):
        where = f"{field}[{index}]"
        if not isinstance(entry, dict):
            problems.append(f'{where} must be an object such as {{"channel": "sms"}}.')
            continue
        for name in entry:
            if name not in PLAN_SETTINGS:
                problems.append(f"{where}.{name} is not a setting; a plan entry takes {', '.join(PLAN_SETTINGS)}.")
        if entry.get("channel") not in Channel.values:
            problems.append(f"{where}.channel must be one of {', '.join(Channel.values)}, "
                            f"not {entry.get('channel')!r}.")
        if "fallback_after_seconds" in entry and not whole_seconds(entry["fallback_after_seconds"],
                                                                   MAX_FALLBACK_SECONDS):
            problems.append(f"{where}.fallback_after_seconds must be a whole number of seconds from 1 to "
                            f"{MAX_FALLBACK_SECONDS}, not {entry['fallback_after_seconds']!r}.")
        if "fallback_unless" in entry and entry["fallback_unless"] not in FALLBACK_CONDITIONS:
            problems.append(f"{where}.fallback_unless must be one of {', '.join(FALLBACK_CONDITIONS)}, "
                            f"not {entry['fallback_unless']!r}.")
    return problems


def whole_seconds(value, maximum: int) -> bool:
    """Whether value is a JSON whole number from 1 to maximum (true and "1h" are not)."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= maximum
