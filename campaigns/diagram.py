"""A journey drawn as SVG, from the steps of a snapshot (a published version's, or the draft's as
campaigns.actions.draft_snapshot makes them). Pure: steps and figures in, markup out; no query,
no library, no system binary.

The layout is layered: each step sits one layer below the furthest step that leads to it (its
distance from the first step along the longest path, so a step several branches reach is drawn
once, below all of them), branches side by side in the order yes / no, the paths of a split
left to right. Edges that go back up (loops) are drawn around the right side; an edge that
skips layers passes through a reserved place in each layer it crosses, so it never runs
through a node. Every way out of the journey ends in one "end" node at the bottom.
"""
from dataclasses import dataclass, field

from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from .models import plan_steps
from .step_settings import StepKind, split_targets

# The end node's id: not a slug, so no step key can be it.
END = ":end"

NODE_WIDTH = 236
NODE_HEIGHT = 76
# A node without counts (the draft's) has two lines, not three.
SHORT_NODE_HEIGHT = 54
END_WIDTH = 90
END_HEIGHT = 34
# The place an edge that skips a layer takes in that layer.
PASSAGE_WIDTH = 16
NODE_GAP = 36
LAYER_GAP = 64
MARGIN = 24
# Loops run up the right side, one lane each.
LANE_GAP = 16
# What fits on a node's line at 12 px (about 6.6 px a character); the whole text is its tooltip.
LINE_CHARACTERS = 33

# The words a mark puts on a node of the draft (or, for a removed step, of the live version).
MARK_WORDS = {"added": "added", "changed": "changed", "removed": "removed in the draft"}
MARK_COLOURS = {"added": "#15803d", "changed": "#b45309", "removed": "#b91c1c"}


@dataclass(frozen=True)
class Edge:
    source: str
    target: str  # a step key, or END
    label: str
    # Set while laying out: an edge that goes back up (or to its own step), drawn around the side.
    back: bool = False


@dataclass
class _Place:
    id: str
    layer: int
    width: float
    height: float
    x: float = 0.0  # centre
    y: float = 0.0  # top

    @property
    def bottom(self) -> float:
        return self.y + self.height


@dataclass
class Layout:
    places: dict[str, _Place]
    # Each forward edge's points from its source's bottom to its target's top, and which way its
    # label reads from its line ("start": to the right).
    routes: list[tuple[Edge, list[tuple[float, float]], str]] = field(default_factory=list)
    loops: list[tuple[Edge, float]] = field(default_factory=list)  # back edges and their lane's x
    width: float = 0.0
    height: float = 0.0


def duration_words(seconds) -> str:
    """3 days, 2 hours, 90 minutes, 45 seconds: the largest unit that counts it whole."""
    if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds <= 0:
        return f"{seconds} s"
    for unit, size in (("week", 7 * 86400), ("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds} seconds"


def step_edges(steps: list[dict]) -> list[Edge]:
    """Where each step leads, labelled as a marketer reads it: yes / no, a split's weights, a
    wait's timeout, a webhook's answer. Targets that are not steps here lead to the end."""
    planned = plan_steps(steps)
    edges = []
    for step in steps:
        key, kind = step["key"], step["kind"]
        plan = planned[key]
        config = plan.config if isinstance(plan.config, dict) else {}
        following = plan.following
        if kind == StepKind.CONDITION:
            outs = [(following, "yes"), (plan.else_key, "no")]
        elif kind == StepKind.SPLIT:
            paths = [p for p in config.get("paths") or [] if isinstance(p, dict)]
            total = sum(_weight(p) for p in paths) or 1
            outs = [(target or following, f"{p.get('name')} {100 * _weight(p) / total:.0f}%")
                    for p, target in zip(paths, split_targets(config))]
        elif kind == StepKind.WAIT_EVENT:
            awaited = config.get("event") or config.get("engagement") or "it happened"
            timed_out = f"timed out after {duration_words(config.get('timeout_seconds'))}"
            outs = ([(following, awaited), (plan.else_key, timed_out)] if plan.else_key
                    else [(following, f"{awaited}, or {timed_out}")])
        elif kind == StepKind.WEBHOOK:
            outs = ([(following, "answered"), (plan.else_key, "no answer")] if plan.else_key
                    else [(following, "answered or not")])
        elif kind == StepKind.WAIT_DATE:
            outs = ([(following, "on the date"), (plan.else_key, "no date")] if plan.else_key
                    else [(following, "")])
        elif kind == StepKind.EXIT:
            outs = [(None, "exit")]
        else:
            outs = [(following, "")]
        merged: dict[str, list[str]] = {}
        for target, label in outs:
            if target is None or target not in planned:
                label = label if target is None else f"{label} (to {target}, not a step here)".strip()
                target = END
            merged.setdefault(target, []).append(label)
        edges.extend(Edge(key, target, ", ".join(label for label in labels if label))
                     for target, labels in merged.items())
    return edges


def _weight(path: dict) -> int:
    weight = path.get("weight")
    return weight if isinstance(weight, int) and not isinstance(weight, bool) and weight > 0 else 0


def lay_out(steps: list[dict], node_height: int = NODE_HEIGHT) -> Layout:
    """Places for every step and the end node, routes for every edge."""
    keys = [step["key"] for step in steps]
    edges = step_edges(steps)
    outgoing: dict[str, list[int]] = {key: [] for key in keys}
    for index, edge in enumerate(edges):
        outgoing[edge.source].append(index)

    # Back edges: those that reach a step still on the walk from the first step (or its own).
    back, state, finished = set(), {}, []
    for root in keys:
        if root in state:
            continue
        state[root] = "open"
        walk = [(root, iter(outgoing[root]))]
        while walk:
            node, pending = walk[-1]
            for index in pending:
                target = edges[index].target
                if target == END:
                    continue
                if state.get(target) == "open":
                    back.add(index)
                elif target not in state:
                    state[target] = "open"
                    walk.append((target, iter(outgoing[target])))
                    break
            else:
                state[node] = "done"
                finished.append(node)
                walk.pop()
    edges = [Edge(e.source, e.target, e.label, back=index in back) for index, e in enumerate(edges)]

    layer = dict.fromkeys(keys, 0)
    for node in reversed(finished):  # a topological order of the forward edges
        for index in outgoing[node]:
            edge = edges[index]
            if not edge.back and edge.target != END:
                layer[edge.target] = max(layer[edge.target], layer[node] + 1)
    layer[END] = max(layer.values(), default=-1) + 1

    places = {key: _Place(key, layer[key], NODE_WIDTH, node_height) for key in keys}
    places[END] = _Place(END, layer[END], END_WIDTH, END_HEIGHT)
    # Each forward edge as a chain of places, one in each layer it crosses.
    chains: list[tuple[Edge, int, list[str]]] = []
    for index, edge in enumerate(edges):
        if edge.back:
            continue
        chain = [edge.source]
        for between in range(layer[edge.source] + 1, layer[edge.target]):
            passage = f"{index}:{between}"
            places[passage] = _Place(passage, between, PASSAGE_WIDTH, node_height)
            chain.append(passage)
        chain.append(edge.target)
        rank = outgoing[edge.source].index(index)
        chains.append((edge, rank, chain))

    _order_and_place(keys, places, chains, node_height)

    right = max(place.x + place.width / 2 for place in places.values())
    layout = Layout(places={k: p for k, p in places.items() if k in layer})
    leaving: dict[str, list[int]] = {}
    for index, (edge, _, _) in enumerate(chains):
        leaving.setdefault(edge.source, []).append(index)
    for indexes in leaving.values():
        indexes.sort(key=lambda index: chains[index][1])
        spread = min(64.0, NODE_WIDTH / (len(indexes) + 1))
        for port, index in enumerate(indexes):
            edge, _, chain = chains[index]
            offset = (port - (len(indexes) - 1) / 2) * spread
            # A label stands beside its edge, on the side the edge leaves to, clear of its neighbours.
            anchor = "start" if offset > 0 or len(indexes) == 1 else "end" if offset < 0 else "middle"
            layout.routes.append((edge, _route(places, chain, offset), anchor))
    layout.loops = [(edge, right + LANE_GAP * (lane + 1))
                    for lane, edge in enumerate(e for e in edges if e.back)]
    label_room = max((len(edge.label) for edge, _ in layout.loops), default=0) * 6
    layout.width = right + LANE_GAP * (len(layout.loops) + 1) + (label_room if layout.loops else 0) + MARGIN
    layout.height = places[END].bottom + MARGIN
    return layout


def _order_and_place(keys: list[str], places: dict[str, _Place], chains, node_height: int) -> None:
    """Order each layer by where its places' predecessors stand (a branch's yes left of its no),
    then place each under the mean of its predecessors, spread so that none overlap."""
    predecessors: dict[str, list[tuple[str, int]]] = {place: [] for place in places}
    for _, rank, chain in chains:
        for above, below in zip(chain, chain[1:]):
            predecessors[below].append((above, rank))
    position = {key: index for index, key in enumerate(keys)}
    depth = max(place.layer for place in places.values())
    layers: list[list[str]] = [[] for _ in range(depth + 1)]
    for place_id, place in places.items():
        layers[place.layer].append(place_id)

    order: dict[str, int] = {}
    for number, members in enumerate(layers):
        def sort_key(place_id):
            above = predecessors[place_id]
            if place_id == END:
                return (1, 0.0, 0.0, 0)
            if not above:
                return (0, float("inf"), 0.0, position.get(place_id, 0))
            return (0, sum(order[p] for p, _ in above) / len(above), sum(r for _, r in above) / len(above),
                    position.get(place_id, 0))
        members.sort(key=sort_key)
        for index, place_id in enumerate(members):
            order[place_id] = index

        wanted = []
        for index, place_id in enumerate(members):
            above = predecessors[place_id]
            if above:
                wanted.append(sum(places[p].x for p, _ in above) / len(above))
            elif index:
                wanted.append(wanted[-1] + (places[members[index - 1]].width + places[place_id].width) / 2 + NODE_GAP)
            else:
                wanted.append(0.0)
        placed: list[float] = []
        for index, place_id in enumerate(members):
            x = wanted[index]
            if index:
                previous = places[members[index - 1]]
                x = max(x, placed[-1] + (previous.width + places[place_id].width) / 2 + NODE_GAP)
            placed.append(x)
        # Spreading pushed places right: move the layer back so that, on average, each stands
        # where it wanted to.
        shift = sum(w - p for w, p in zip(wanted, placed)) / len(placed) if placed else 0.0
        top = MARGIN + number * (node_height + LAYER_GAP)
        for place_id, x in zip(members, placed):
            place = places[place_id]
            place.x = x + shift
            place.y = top + (node_height - place.height) / 2 if place_id == END else top

    left = min(place.x - place.width / 2 for place in places.values())
    for place in places.values():
        place.x += MARGIN - left


def _route(places: dict[str, _Place], chain: list[str], offset: float) -> list[tuple[float, float]]:
    points = [(places[chain[0]].x + offset, places[chain[0]].bottom)]
    for passage in chain[1:-1]:
        place = places[passage]
        points += [(place.x, place.y), (place.x, place.bottom)]
    points.append((places[chain[-1]].x, places[chain[-1]].y))
    return points


def draw_journey(steps: list[dict], *, dom_id: str, title: str, description: str = "",
                 at_step: dict[str, int] | None = None, passed: dict[str, int] | None = None,
                 marks: dict[str, str] | None = None, links: dict[str, str] | None = None,
                 descriptions: dict[str, str] | None = None, highlighted: str = "") -> SafeString:
    """The steps as an SVG image. `at_step` and `passed` (by step key; None: no counts, as for a
    draft) are shown on each node in elements the page's script updates (data-at-step,
    data-passed). `marks` puts "added", "changed" or "removed in the draft" on a node, `links`
    makes a node a link, `descriptions` is each node's tooltip (the step in full words), and
    the node of `highlighted` is outlined. Every text is escaped; the result is valid XML."""
    layout = lay_out(steps, NODE_HEIGHT if at_step is not None else SHORT_NODE_HEIGHT)
    marks, links, descriptions = marks or {}, links or {}, descriptions or {}
    arrow = f"{dom_id}-arrow"
    parts = [format_html(
        '<svg xmlns="http://www.w3.org/2000/svg" id="{}" class="journey-diagram" role="img" '
        'aria-labelledby="{}-title {}-desc" viewBox="0 0 {} {}" width="{}" height="{}" '
        'style="max-width: 100%; height: auto" font-family="system-ui, sans-serif" font-size="12">'
        '<title id="{}-title">{}</title><desc id="{}-desc">{}</desc>'
        '<defs><marker id="{}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#6b7280"/></marker></defs>',
        dom_id, dom_id, dom_id, _n(layout.width), _n(layout.height), _n(layout.width), _n(layout.height),
        dom_id, title, dom_id, description or title, arrow)]
    parts += [_forward_edge(edge, points, anchor, arrow) for edge, points, anchor in layout.routes]
    parts += [_loop_edge(edge, lane, layout.places, index, arrow) for index, (edge, lane) in enumerate(layout.loops)]
    for step in steps:
        key = step["key"]
        parts.append(_node(step, layout.places[key], at_step=at_step, passed=passed, mark=marks.get(key, ""),
                           link=links.get(key, ""), description=descriptions.get(key, ""),
                           highlighted=key == highlighted))
    end = layout.places[END]
    parts.append(format_html(
        '<g class="journey-end"><rect x="{}" y="{}" width="{}" height="{}" rx="17" fill="#374151"/>'
        '<text x="{}" y="{}" text-anchor="middle" fill="#ffffff" font-weight="600">end</text></g>',
        _n(end.x - end.width / 2), _n(end.y), _n(end.width), _n(end.height), _n(end.x), _n(end.y + 21)))
    parts.append(mark_safe("</svg>"))
    return mark_safe("".join(parts))


def _forward_edge(edge: Edge, points: list[tuple[float, float]], anchor: str, arrow: str) -> SafeString:
    path = [f"M {_n(points[0][0])} {_n(points[0][1])}"]
    for (x1, y1), (x2, y2) in zip(points, points[1:]):
        if x1 == x2:
            path.append(f"L {_n(x2)} {_n(y2)}")
        else:
            middle = (y1 + y2) / 2
            path.append(f"C {_n(x1)} {_n(middle)} {_n(x2)} {_n(middle)} {_n(x2)} {_n(y2)}")
    line = format_html('<path class="journey-edge" d="{}" fill="none" stroke="#6b7280" stroke-width="1.5" '
                       'marker-end="url(#{})"/>', " ".join(path), arrow)
    if not edge.label:
        return line
    x, y = points[0]
    return line + _label(x + {"start": 6, "end": -6}.get(anchor, 0), y + 20, edge.label, anchor)


def _loop_edge(edge: Edge, lane: float, places: dict[str, _Place], index: int, arrow: str) -> SafeString:
    """Down out of the step, right to its lane, up beside the journey, and down into its target."""
    source, target = places[edge.source], places[edge.target]
    out_x, in_x = source.x + source.width / 4, target.x + target.width / 4
    below, above = source.bottom + 12 + 5 * (index % 3), target.y - 14 - 5 * (index % 3)
    path = (f"M {_n(out_x)} {_n(source.bottom)} L {_n(out_x)} {_n(below)} L {_n(lane)} {_n(below)} "
            f"L {_n(lane)} {_n(above)} L {_n(in_x)} {_n(above)} L {_n(in_x)} {_n(target.y)}")
    line = format_html('<path class="journey-edge journey-loop" d="{}" fill="none" stroke="#6b7280" '
                       'stroke-width="1.5" stroke-dasharray="5 3" marker-end="url(#{})"/>', path, arrow)
    label = f"back: {edge.label}" if edge.label else "back"
    return line + _label(lane + 4, (below + above) / 2, label, "start")


def _label(x: float, y: float, text: str, anchor: str) -> SafeString:
    # The white outline keeps a label readable where it crosses an edge.
    return format_html('<text class="journey-edge-label" x="{}" y="{}" text-anchor="{}" font-size="11" '
                       'fill="#374151" stroke="#ffffff" stroke-width="4" paint-order="stroke">{}</text>',
                       _n(x), _n(y), anchor, text)


def _node(step: dict, place: _Place, *, at_step, passed, mark: str, link: str, description: str,
          highlighted: bool) -> SafeString:
    key = step["key"]
    left, top = place.x - place.width / 2, place.y
    stroke = MARK_COLOURS.get(mark, "#2563eb" if highlighted else "#9ca3af")
    outline = format_html(
        '<rect x="{}" y="{}" width="{}" height="{}" rx="8" fill="{}" stroke="{}" stroke-width="{}"{}/>',
        _n(left), _n(top), _n(place.width), _n(place.height), "#eff6ff" if highlighted else "#ffffff", stroke,
        "3" if highlighted or mark else "1.2", mark_safe(' stroke-dasharray="6 3"') if mark == "removed" else "")
    heading = format_html('<text x="{}" y="{}" font-weight="600" fill="#111827">{}</text>',
                          _n(left + 10), _n(top + 19), _cut(key, 20 if mark or highlighted else LINE_CHARACTERS - 2))
    tag = format_html('<text x="{}" y="{}" text-anchor="end" font-size="11" font-weight="600" fill="{}">{}</text>',
                      _n(left + place.width - 10), _n(top + 19), stroke, MARK_WORDS[mark]) if mark else ""
    if highlighted:
        tag = format_html('<text x="{}" y="{}" text-anchor="end" font-size="11" font-weight="600" fill="{}">'
                          'the contact is here</text>', _n(left + place.width - 10), _n(top + 19), stroke)
    what = format_html('<text x="{}" y="{}" fill="#374151">{}</text>', _n(left + 10), _n(top + 40),
                       _cut(step_label(step), LINE_CHARACTERS))
    figures = ""
    if at_step is not None:
        figures = format_html(
            '<text x="{}" y="{}" font-size="11" fill="#4b5563"><tspan data-at-step="{}" font-weight="600">{}</tspan>'
            ' here now · <tspan data-passed="{}" font-weight="600">{}</tspan> passed through</text>',
            _n(left + 10), _n(top + 62), key, at_step.get(key, 0), key, (passed or {}).get(key, 0))
    body = format_html('<title>{}</title>{}{}{}{}{}', description or step_label(step), outline, heading, tag, what,
                       figures)
    if link:
        body = format_html('<a href="{}">{}</a>', link, body)
    return format_html('<g class="journey-node" data-step="{}"{}>{}</g>', key,
                       format_html(' data-mark="{}"', mark) if mark else "", body)


def step_label(step: dict) -> str:
    """What a step does in a few words (the node's second line; the full words are in its tooltip)."""
    kind, config = step["kind"], step.get("config") or {}
    if not isinstance(config, dict):
        config = {}
    if kind == StepKind.SEND:
        channels = ", then ".join(str(entry.get("channel", "?")) for entry in step.get("channel_plan") or []
                                  if isinstance(entry, dict))
        return f"send {step.get('template_key') or 'a message'}" + (f" by {channels}" if channels else "")
    if kind == StepKind.WAIT:
        return f"wait {duration_words(config.get('seconds'))}"
    if kind == StepKind.WAIT_UNTIL:
        days = f" on {', '.join(map(str, config['days']))}" if isinstance(config.get("days"), list) else ""
        return f"wait until {config.get('time')}{days}"
    if kind == StepKind.WAIT_DATE:
        offset = config.get("offset_seconds") or 0
        date = config.get("attribute") or config.get("property")
        if not isinstance(offset, int) or not offset:
            return f"wait until {date}"
        return f"wait until {duration_words(abs(offset))} {'before' if offset < 0 else 'after'} {date}"
    if kind == StepKind.WAIT_EVENT:
        if "event" in config:
            return f"wait for {config['event']}"
        return f"wait for {config.get('engagement')} of {config.get('step')}"
    if kind == StepKind.CONDITION:
        check = config.get("check", "engaged")
        if check == "attribute":
            return f"if {config.get('name')} {_comparison(config)}"
        if check == "event":
            return f"if did {config.get('name')}"
        if check == "webhook":
            return f"if answer {config.get('name')} {_comparison(config)}"
        return f"if {config.get('step')} {check}"
    if kind == StepKind.SPLIT:
        return f"split {len(config.get('paths') or [])} ways"
    if kind == StepKind.UPDATE:
        if "lifecycle_stage" in config:
            return f"set stage {config['lifecycle_stage']}"
        return f"set {config.get('attribute')} to {config.get('value')!r}"
    if kind == StepKind.WEBHOOK:
        return f"call webhook {config.get('endpoint')}"
    return "exit the journey"


def _comparison(config: dict) -> str:
    if "equals" in config:
        return f"= {config['equals']!r}"
    words = str(config.get("operator", "")).replace("_", " ")
    return f"{words} {config['value']!r}" if "value" in config else words


def _cut(text: str, limit: int) -> str:
    text = str(text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _n(value: float) -> str:
    """A coordinate, short."""
    return f"{value:.1f}".rstrip("0").rstrip(".")


def step_changes(live_steps: list[dict], draft_steps: list[dict]) -> dict[str, str]:
    """The draft's steps against the live version's, by key: "added", "changed" (it runs
    differently: its settings, its template version or where it leads) or "removed"."""
    live, draft = plan_steps(live_steps), plan_steps(draft_steps)
    changes = {key: "added" if key not in live else "changed" for key, step in draft.items()
               if key not in live or step != live[key]}
    changes.update({key: "removed" for key in live if key not in draft})
    return changes
