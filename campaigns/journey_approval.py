"""Approval of a journey's activation (filled in by the Journeys II approval work)."""


def draft_edited(journey, *, actor) -> None:
    """Called at the end of every draft edit's transaction: resets an approval the edit made stale."""
