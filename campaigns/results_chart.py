"""Each A/B variant's rate with its 95% interval, drawn as SVG (the campaign page's A/B test
section). Pure: results in, markup out; every text escaped with format_html; valid XML."""
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

LABEL_WIDTH = 140
PLOT_WIDTH = 360
FIGURE_WIDTH = 150
ROW_HEIGHT = 34
BAR_HEIGHT = 16
MARGIN = 12
AXIS_HEIGHT = 24
BAR_COLOUR = "#6366f1"
WINNER_COLOUR = "#15803d"


def _n(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _scale_top(results) -> float:
    """The rate at the plot's right end: the highest interval's end, rounded up to a tidy step."""
    highest = max((r.interval[1] for r in results), default=0.0)
    for top in (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0):
        if highest <= top:
            return top
    return 1.0


def draw_rates(results, *, dom_id: str, title: str, winner_id=None) -> SafeString:
    """One row per variant: a bar for its rate, a whisker for its 95% interval, the figures."""
    top = _scale_top(results)
    width = LABEL_WIDTH + PLOT_WIDTH + FIGURE_WIDTH + 2 * MARGIN
    height = MARGIN + len(results) * ROW_HEIGHT + AXIS_HEIGHT
    x0 = MARGIN + LABEL_WIDTH

    def x(rate: float) -> float:
        return x0 + PLOT_WIDTH * min(rate, top) / top

    parts = [format_html(
        '<svg xmlns="http://www.w3.org/2000/svg" id="{}" class="ab-chart" role="img" aria-labelledby="{}-title" '
        'viewBox="0 0 {} {}" width="{}" height="{}" style="max-width: 100%; height: auto" '
        'font-family="system-ui, sans-serif" font-size="12"><title id="{}-title">{}</title>',
        dom_id, dom_id, width, height, width, height, dom_id, title)]
    for index, result in enumerate(results):
        y = MARGIN + index * ROW_HEIGHT
        middle = y + BAR_HEIGHT / 2
        low, high = result.interval
        colour = WINNER_COLOUR if result.variant.pk == winner_id else BAR_COLOUR
        parts.append(format_html(
            '<g class="ab-variant" data-variant="{}"><text x="{}" y="{}" text-anchor="end" fill="#111827">{}</text>'
            '<rect x="{}" y="{}" width="{}" height="{}" rx="2" fill="{}" fill-opacity="0.75"/>'
            '<path class="ab-interval" d="M {} {} H {} M {} {} V {} M {} {} V {}" stroke="#111827" stroke-width="1.5"/>'
            '<text x="{}" y="{}" fill="#374151">{} ({} to {}), {} of {}</text></g>',
            result.variant.pk, _n(x0 - 8), _n(middle + 4), result.variant.name,
            _n(x0), _n(y), _n(max(x(result.rate) - x0, 0)), BAR_HEIGHT, colour,
            _n(x(low)), _n(middle), _n(x(high)), _n(x(low)), _n(y + 2), _n(y + BAR_HEIGHT - 2),
            _n(x(high)), _n(y + 2), _n(y + BAR_HEIGHT - 2),
            _n(x0 + PLOT_WIDTH + 8), _n(middle + 4), f"{result.rate:.1%}", f"{low:.1%}", f"{high:.1%}",
            result.successes, result.sent))
    axis_y = MARGIN + len(results) * ROW_HEIGHT
    parts.append(format_html('<path d="M {} {} H {}" stroke="#9ca3af"/>', _n(x0), _n(axis_y), _n(x0 + PLOT_WIDTH)))
    for tick in range(5):
        rate = top * tick / 4
        parts.append(format_html('<text x="{}" y="{}" text-anchor="middle" font-size="10" fill="#6b7280">{}</text>',
                                 _n(x(rate)), _n(axis_y + 14), f"{rate:.0%}" if top >= 0.1 else f"{rate:.1%}"))
    parts.append(mark_safe("</svg>"))
    return mark_safe("".join(parts))
