"""A started campaign's fan-out: due recipients claimed by the tick and sent in batches on the
campaigns queue; pause, resume, cancel; the end. (Interface; being built for issue 21.)"""


def pause_campaign(campaign, *, actor, reason: str = "") -> None:
    raise NotImplementedError


def resume_campaign(campaign, *, actor) -> None:
    raise NotImplementedError


def cancel_campaign(campaign, *, actor) -> int:
    """Skip pending recipients (cancelled) and cancel their unqueued messages. Returns how many."""
    raise NotImplementedError
