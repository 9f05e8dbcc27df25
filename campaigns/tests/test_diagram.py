"""The journey drawn as SVG (campaigns/diagram.py): every step once, labelled edges for branches,
splits, timeouts and webhooks, loops around the side, escaped text and valid XML."""
import xml.etree.ElementTree as ET

from campaigns.diagram import END, draw_journey, lay_out, step_changes, step_edges

SVG = "{http://www.w3.org/2000/svg}"


def send(key, **links):
    return {"key": key, "kind": "send", "template_key": f"{key}-template", "template_version_number": 1,
            "channel_plan": [{"channel": "email"}], "config": {}, **links}


def step(key, kind, config=None, **links):
    return {"key": key, "kind": kind, "config": config or {}, **links}


# Every kind of branch: a wait for an event with its timeout branch, a condition, a split, a
# webhook with its "no answer" branch, a step two branches lead to, and a loop back up.
BRANCHING = [
    send("welcome"),
    step("wait-activation", "wait_event", {"event": "activated", "timeout_seconds": 3 * 86400},
         next="done", **{"else": "nudge"}),
    send("nudge"),
    step("is-pro", "condition", {"check": "attribute", "name": "plan", "operator": "equals", "value": "pro"},
         next="pick", **{"else": "done"}),
    step("pick", "split", {"paths": [{"name": "A", "weight": 30, "step": "ask-crm"},
                                     {"name": "B", "weight": 70, "step": "pause"}]}),
    step("ask-crm", "webhook", {"endpoint": "crm", "timeout_seconds": 600}, next="done", **{"else": "sorry"}),
    step("pause", "wait", {"seconds": 3600}, next="is-pro"),
    send("sorry", next="done"),
    step("done", "exit"),
]


def parsed(svg) -> ET.Element:
    return ET.fromstring(str(svg))


def nodes(root) -> dict[str, ET.Element]:
    found = {}
    for group in root.iter(f"{SVG}g"):
        if group.get("class") == "journey-node":
            assert group.get("data-step") not in found, "a step drawn twice"
            found[group.get("data-step")] = group
    return found


def texts(root) -> list[str]:
    return ["".join(element.itertext()) for element in root.iter(f"{SVG}text")]


def test_every_step_is_drawn_once_with_its_words_and_counts_and_the_end_node():
    svg = draw_journey(BRANCHING, dom_id="d", title="Welcome", at_step={"pause": 3, "nudge": 1},
                       passed={"welcome": 40, "pause": 12})

    root = parsed(svg)
    drawn = nodes(root)
    assert list(drawn) == [s["key"] for s in BRANCHING]
    assert "wait 1 hour" in texts(drawn["pause"])
    assert "3 here now · 12 passed through" in texts(drawn["pause"])
    assert "0 here now · 0 passed through" in texts(drawn["done"])
    assert "wait for activated" in texts(drawn["wait-activation"])
    assert "end" in texts(root)
    assert root.get("role") == "img"
    assert root.find(f"{SVG}title").text == "Welcome"


def test_edges_say_yes_and_no_split_weights_timeouts_and_webhook_answers():
    labels = {(edge.source, edge.target): edge.label for edge in step_edges(BRANCHING)}

    assert labels[("wait-activation", "done")] == "activated"
    assert labels[("wait-activation", "nudge")] == "timed out after 3 days"
    assert labels[("is-pro", "pick")] == "yes"
    assert labels[("is-pro", "done")] == "no"
    assert labels[("pick", "ask-crm")] == "A 30%" and labels[("pick", "pause")] == "B 70%"
    assert labels[("ask-crm", "done")] == "answered" and labels[("ask-crm", "sorry")] == "no answer"
    assert labels[("done", END)] == "exit"
    # and the drawing shows them
    drawn = texts(parsed(draw_journey(BRANCHING, dom_id="d", title="Welcome")))
    for label in ("yes", "no", "A 30%", "B 70%", "timed out after 3 days", "answered", "no answer"):
        assert label in drawn


def test_a_wait_without_a_timeout_branch_says_both_ways_lead_on():
    steps = [step("wait", "wait_event", {"engagement": "opened", "step": "mail", "timeout_seconds": 7200}),
             step("done", "exit")]

    assert [(e.source, e.target, e.label) for e in step_edges(steps)][0] == (
        "wait", "done", "opened, or timed out after 2 hours")


def test_branches_stand_side_by_side_and_a_step_two_branches_reach_is_drawn_once_below_both():
    layout = lay_out(BRANCHING)
    places = layout.places

    # the split's two paths share a layer, yes left of no, and do not overlap
    assert places["ask-crm"].y == places["pause"].y
    assert places["ask-crm"].x + places["ask-crm"].width / 2 < places["pause"].x - places["pause"].width / 2
    # "done" is reached from the wait, the condition and the webhook: once, below all of them
    for source in ("wait-activation", "is-pro", "ask-crm", "sorry"):
        assert places["done"].y > places[source].y
    assert places[END].y > max(place.y for key, place in places.items() if key != END)


def test_a_loop_runs_around_the_right_side_and_is_drawn_as_a_back_edge():
    layout = lay_out(BRANCHING)

    assert [(edge.source, edge.target) for edge, _ in layout.loops] == [("pause", "is-pro")]
    (_, lane), = layout.loops
    assert lane > max(place.x + place.width / 2 for place in layout.places.values())
    root = parsed(draw_journey(BRANCHING, dom_id="d", title="Welcome"))
    assert [p for p in root.iter(f"{SVG}path") if "journey-loop" in (p.get("class") or "")]
    assert "back" in texts(root)


def test_a_step_leading_to_itself_is_a_loop_too():
    steps = [step("again", "wait", {"seconds": 60}, next="again")]

    layout = lay_out(steps)

    assert [(edge.source, edge.target) for edge, _ in layout.loops] == [("again", "again")]
    parsed(draw_journey(steps, dom_id="d", title="Again"))


def test_names_are_escaped_and_the_svg_stays_valid_xml():
    steps = [send("<script>alert(1)</script>", next="a&b"), step("a&b", "exit")]
    steps[0]["template_key"] = '"quoted" & <b>bold</b>'

    svg = str(draw_journey(steps, dom_id="d", title="<i>Journey</i> & co",
                           links={"a&b": "/admin/x/?a=1&b=<2>"}, descriptions={"a&b": "<em>ends</em>"}))

    assert "<script>" not in svg and "<b>" not in svg and "<i>" not in svg and "<em>" not in svg
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in svg
    root = parsed(svg)
    assert list(nodes(root)) == ["<script>alert(1)</script>", "a&b"]
    link = nodes(root)["a&b"].find(f"{SVG}a")
    assert link.get("href") == "/admin/x/?a=1&b=<2>"
    assert root.find(f"{SVG}title").text == "<i>Journey</i> & co"


def test_a_draft_without_counts_shows_none_and_marks_and_highlight_are_drawn():
    svg = draw_journey(BRANCHING, dom_id="d", title="Draft", marks={"nudge": "added", "pause": "changed"},
                       highlighted="welcome")

    drawn = nodes(parsed(svg))
    assert not any("here now" in text for text in texts(parsed(svg)))
    assert drawn["nudge"].get("data-mark") == "added" and "added" in texts(drawn["nudge"])
    assert drawn["pause"].get("data-mark") == "changed"
    assert "the contact is here" in texts(drawn["welcome"])


def test_targets_that_are_not_steps_lead_to_the_end_and_say_so():
    steps = [send("mail", next="other-journey:step")]

    (edge,) = step_edges(steps)

    assert edge.target == END and "other-journey:step" in edge.label
    parsed(draw_journey(steps, dom_id="d", title="Broken"))


def test_malformed_settings_of_a_draft_still_draw():
    steps = [step("odd", "split", {"paths": "not a list"}), {"key": "worse", "kind": "wait", "config": ["x"]},
             step("bad", "wait_event", {"timeout_seconds": "soon"})]

    root = parsed(draw_journey(steps, dom_id="d", title="Odd"))

    assert list(nodes(root)) == ["odd", "worse", "bad"]


def test_changes_compare_the_draft_with_the_live_version_by_key():
    live = [send("welcome"), step("wait", "wait", {"seconds": 60}), step("gone", "exit")]
    draft = [send("welcome"), step("wait", "wait", {"seconds": 120}), step("new", "exit")]

    assert step_changes(live, draft) == {"wait": "changed", "new": "added", "gone": "removed"}
    assert step_changes(live, live) == {}
