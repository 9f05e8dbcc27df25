"""A progress bar any page can show: labelled segments with their counts, out of a total.

The segments are parts of the total that do not overlap (delivered, sent, failed...), drawn side
by side in order; what they leave is what is still to do. The template
(omni/templates/omni/progress_bar.html, styled by omni/static/omni/progress_bar.css) draws the bar
as a `role="progressbar"` with its figures in words, so a screen reader and a reader of the page
get the same numbers. Campaigns use it for their fan-out; the contact import later for its rows.
"""
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ProgressSegment:
    """One part of the total: `key` names it for CSS and scripts (a word, e.g. "delivered")."""

    key: str
    label: str
    count: int

    def percent_of(self, total: int) -> float:
        return round(100 * self.count / total, 2) if total else 0.0


@dataclass(frozen=True)
class Progress:
    """`label` names what progresses ("Recipients decided"); `remaining_label` names the rest."""

    label: str
    total: int
    segments: list[ProgressSegment] = field(default_factory=list)
    remaining_label: str = "to do"

    @property
    def done(self) -> int:
        return min(sum(segment.count for segment in self.segments), self.total)

    @property
    def remaining(self) -> int:
        return max(self.total - self.done, 0)

    @property
    def percent(self) -> int:
        """Done as a whole percentage, rounded down: 100 only when everything is done."""
        return 100 * self.done // self.total if self.total else 0

    @property
    def parts(self) -> list[dict]:
        """Each segment with its width on the bar, in percent (for the template)."""
        return [{"key": segment.key, "label": segment.label, "count": segment.count,
                 "width": segment.percent_of(self.total)} for segment in self.segments]

    @property
    def words(self) -> str:
        """The figures in one sentence, the bar's aria-valuetext."""
        parts = ", ".join(f"{segment.label} {segment.count:,}" for segment in self.segments)
        text = f"{self.label}: {self.done:,} of {self.total:,} ({self.percent}%)"
        return f"{text}; {parts}; {self.remaining_label} {self.remaining:,}" if parts else text

    def as_json(self) -> dict:
        """The figures for a page that refreshes the bar in place (omni/static/omni/progress_bar.js)."""
        return {"total": self.total, "done": self.done, "percent": self.percent, "remaining": self.remaining,
                "words": self.words,
                "segments": self.parts}
