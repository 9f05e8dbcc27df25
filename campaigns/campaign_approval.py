"""A campaign's approval, on omni/lib/approval.py's pattern. (Interface; being built for issue 21.)"""


def campaign_digest(campaign) -> str:
    """The digest of what an approver approves: the campaign's content, audience and variants."""
    raise NotImplementedError


def approval_needed(campaign) -> bool:
    """Marketing to an audience larger than settings.OMNI_CAMPAIGN_APPROVAL_MIN_AUDIENCE."""
    raise NotImplementedError


def request_approval(campaign, *, actor) -> None:
    raise NotImplementedError


def approve(campaign, *, actor, seen_digest: str | None = None) -> None:
    raise NotImplementedError


def reset_if_changed(campaign, *, actor) -> bool:
    """After an edit: a request or approval whose digest no longer matches is reset, audited."""
    raise NotImplementedError


def approval_state(campaign):
    """omni.lib.approval.ApprovalState for the page."""
    raise NotImplementedError
