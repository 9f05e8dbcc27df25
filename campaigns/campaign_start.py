"""Starting a campaign: checks, pinned versions, the audience snapshot, holdout and variants
drawn, send times. Also clone, follow-up and test send. (Interface; being built for issue 21.)"""
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError


class CampaignNotReady(ValidationError):
    """Why a campaign cannot start: `problems`, each in words."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__(self.problems)


@dataclass
class StartSummary:
    audience: int = 0
    pending: int = 0
    holdout: int = 0
    waiting_for_winner: int = 0
    skipped: dict = field(default_factory=dict)


def start_problems(campaign) -> list[str]:
    """What stops `campaign` from starting now, in words (empty: it can start)."""
    raise NotImplementedError


def audience_count(campaign) -> int:
    """How many contacts the campaign's segment (or follow-up source) holds now."""
    raise NotImplementedError


def start_campaign(campaign, *, actor, now=None) -> StartSummary:
    """Start: pin versions, snapshot recipients, draw holdout and variants, set send times;
    audited campaign.started. Raises CampaignNotReady."""
    raise NotImplementedError


def clone_campaign(campaign, *, actor):
    """A new draft with the same settings and variants, audited campaign.cloned."""
    raise NotImplementedError


def create_follow_up(campaign, *, actor, when: str, after, name: str = "", template=None):
    """A draft campaign whose audience is `campaign`'s recipients who did not <when> within
    `after` (campaigns.models.FollowUpWhen), linked by follow_up_of; audited."""
    raise NotImplementedError


def send_test(campaign, *, actor, contacts=None) -> list:
    """Send each variant to the test contacts (Contact.is_test) with the test_send exemption."""
    raise NotImplementedError
