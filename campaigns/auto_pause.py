"""Campaigns and journeys that pause themselves when their sends go wrong.
(Interface; being built for issue 21.)"""


def campaign_health(campaign):
    """The rates auto-pause watches, with their thresholds, for the page."""
    raise NotImplementedError
