"""Enrollment.context in words, for the enrollment page (no JSON where a marketer looks): what
enrolled the contact and the trigger's properties, the message each send step made, and each
webhook step's answer, as labelled values."""
from dataclasses import dataclass

from .models import TRIGGER_CONTEXT, TriggerType

# Labels of what a trigger keeps (campaigns/admission.py and the trigger stages).
TRIGGER_LABELS = {"type": "enrolled by", "event": "event", "event_id": "event id", "occurred_at": "event happened at",
                  "moment": "first step due at", "segment": "segment id", "attribute": "date attribute",
                  "date": "date"}
WEBHOOK_LABELS = {"ok": "answered", "status": "HTTP status", "error": "error", "call": "call id",
                  "answered_at": "answered at"}
TRIGGER_TYPES = {**dict(TriggerType.choices), "manual": "By hand (the admin)"}
# A nested value is shown to this depth, then as a count of what it holds.
MAX_DEPTH = 4


@dataclass(frozen=True)
class Row:
    label: str
    value: str
    # For a message: its id, so the page links to it.
    message_id: int | None = None


@dataclass(frozen=True)
class Section:
    title: str
    rows: list


def context_sections(context: dict) -> list[Section]:
    """The sections of an enrollment's context, each a list of labelled values; keys Omni does not
    know are shown under "Other" the same way."""
    context = context if isinstance(context, dict) else {}
    sections = []
    trigger = context.get(TRIGGER_CONTEXT)
    if isinstance(trigger, dict):
        rows = [Row(TRIGGER_LABELS.get(key, key), _trigger_value(key, value))
                for key, value in trigger.items() if key != "properties"]
        rows += [Row(f"property {label}", value) for label, value in _flatten(trigger.get("properties") or {})]
        sections.append(Section("What enrolled the contact", rows))
    messages = context.get("messages")
    if isinstance(messages, dict) and messages:
        sections.append(Section("Messages sent, by step", [
            Row(f"step {key}", f"message {value}", value if isinstance(value, int) else None)
            for key, value in messages.items()]))
    webhooks = context.get("webhooks")
    if isinstance(webhooks, dict) and webhooks:
        rows = []
        for step_key, call in webhooks.items():
            call = call if isinstance(call, dict) else {"answer": call}
            rows += [Row(f"step {step_key}: {WEBHOOK_LABELS.get(key, key)}", _text(value))
                     for key, value in call.items() if key != "answer"]
            rows += [Row(f"step {step_key}: answer {label}".rstrip(), value)
                     for label, value in _flatten(call.get("answer"))]
        sections.append(Section("Webhook answers", rows))
    others = {key: value for key, value in context.items() if key not in (TRIGGER_CONTEXT, "messages", "webhooks")}
    if others:
        sections.append(Section("Other", [Row(label, value) for label, value in _flatten(others)]))
    return sections


def _trigger_value(key, value) -> str:
    if key == "type":
        return str(TRIGGER_TYPES.get(value, value))
    return _text(value)


def _flatten(value, prefix: str = "", depth: int = 0) -> list[tuple[str, str]]:
    """(dotted label, text) for each leaf of a nested value."""
    if isinstance(value, dict) and value and depth < MAX_DEPTH:
        return [row for key, inner in value.items()
                for row in _flatten(inner, f"{prefix}.{key}" if prefix else str(key), depth + 1)]
    if isinstance(value, list) and value and depth < MAX_DEPTH and any(isinstance(v, (dict, list)) for v in value):
        return [row for index, inner in enumerate(value, 1)
                for row in _flatten(inner, f"{prefix} #{index}" if prefix else f"#{index}", depth + 1)]
    return [(prefix, _text(value))]


def _text(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return f"{len(value)} value{'s' if len(value) != 1 else ''}" if value else "none"
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value) if value else "none"
    return str(value)
