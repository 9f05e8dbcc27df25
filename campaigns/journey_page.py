"""What the sections of one journey page share while it is drawn."""
from .actions import draft_snapshot


def page_draft(journey) -> dict:
    """The journey's draft snapshot, read once per page: the problems, approval, diagram, builder
    and versions sections each show it, and the page's journey is one instance for one request."""
    if not hasattr(journey, "_page_draft"):
        journey._page_draft = draft_snapshot(journey)
    return journey._page_draft
