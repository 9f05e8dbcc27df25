from dataclasses import asdict, dataclass, field


@dataclass
class TickReport:
    """What one tick, or one worker's batch, did: counts per kind of work."""
    events: int = 0
    enrolled: int = 0
    # Segments whose members were compared with their memberships (campaigns/segment_triggers.py).
    segments_refreshed: int = 0
    converted: int = 0
    # Enrollments moved by their contacts' replies and closed conversations (on_reply).
    paused: int = 0
    resumed: int = 0
    exited_on_reply: int = 0
    steps: int = 0
    # Waiting enrollments woken by the events they waited for (campaigns/waking.py).
    woken: int = 0
    redispatched: int = 0
    fallbacks: int = 0
    requeued: int = 0
    # Enrollments claimed and handed to workers (the beat's tick); their steps are counted there.
    handed_off: int = 0
    # Campaign messages created by the fan-out run in the tick's own process, and campaigns ended.
    campaign_messages: int = 0
    campaigns_sent: int = 0
    quarantined: int = 0
    # Support automation (channels/support_automation.py): inbound messages looked at, automated
    # replies made, conversations escalated to a queue, conversations handed to agents.
    inbound_handled: int = 0
    automated_replies: int = 0
    escalated: int = 0
    assigned: int = 0
    # Campaigns whose A/B test was decided (campaigns/ab_test.py).
    winners_chosen: int = 0
    # Stages that stopped at their budget with work still due: the next tick goes on with them.
    backlogged: list[str] = field(default_factory=list)
    # Stages that raised (logged with their traceback); the next tick tries them again.
    failed: list[str] = field(default_factory=list)

    def as_dict(self):
        return asdict(self)
