"""A campaign's A/B test: the winner chosen by a two-proportion z-test after the test period.
(Interface; being built for issue 21.)"""


def variant_results(campaign) -> list:
    """Each variant's sends, successes by the test metric, rate and 95% interval."""
    raise NotImplementedError
