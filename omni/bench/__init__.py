"""Omni's benchmarks, run by `manage.py bench`: each seeds its own data in a throwaway database
and returns figures, one JSON line each, as ../shared/BENCHMARKS.md (beside the repository) describes:
{"bench", "metric", "value", "unit", "n", "subject", "notes"}.

`scale` is one number each benchmark reads its own way (see SCALE_MEANING); a small one makes a
smoke run of a few seconds, 50,000 is the issue's full scale.
"""
from dataclasses import asdict, dataclass


@dataclass
class Figure:
    bench: str
    metric: str
    value: float
    unit: str
    n: int
    subject: str = "omni"  # "omni", or "peer" for a ceiling measured on the machine at hand
    notes: str = ""

    def as_json(self) -> dict:
        figure = asdict(self)
        figure["value"] = round(self.value, 3 if abs(self.value) < 10 else 1)
        return figure


SCALE_MEANING = {
    "claim_ceiling": "due enrollments (10x as many in the table)",
    "journey_tick": "due enrollments (10x as many in the table), run by 2 Celery worker processes",
    "ingest_http": "contacts; the load runs scale/5000 seconds per endpoint (1 to 10)",
    "ingest_batch": "events x 4, posted in batches of 1,000",
    "inbound_webhook": "contacts with phones and 20 sent deliveries each; the load runs scale/1000 seconds per "
                       "endpoint (1 to 10)",
    "gate": "sends in one decide_many (and as many contacts), every rule on",
    "timeline": "contacts with 20 deliveries each, beside one contact with 10,000 entries of every kind",
    "segment_count": "contacts with 5 events each, counted by a segment of three filters (the issue: 1,000,000)",
    "campaign_fanout": "contacts in a campaign's segment, over email, SMS and WhatsApp, sent by 2 Celery worker "
                       "processes (the issue: 100,000)",
    "audit_export": "audit entries streamed as CSV through the admin's export (the issue: 1,000,000)",
    "policy_replay": "gate decisions of the last week, replayed with a quiet-hours and a cap change (the issue: "
                     "1,000,000)",
    "contact_import": "CSV rows with consent columns imported through the admin pages, beside django-import-export's "
                      "use_bulk import of the same rows (the issue: 100,000)",
}


# Packages a benchmark needs beyond what `make run` installs (the import name, and where it comes from).
NEEDS = {
    "ingest_http": {"gunicorn": "requirements.txt"},
    "ingest_batch": {"gunicorn": "requirements.txt"},
    "inbound_webhook": {"gunicorn": "requirements.txt"},
}


def missing_packages(names: list[str]) -> list[str]:
    """What the named benchmarks need and this environment lacks, as install instructions."""
    import importlib.util

    missing = {}
    for name in names:
        for package, source in NEEDS.get(name, {}).items():
            if importlib.util.find_spec(package) is None:
                missing[package] = source
    return [f"{package} (pip install -r {source})" for package, source in sorted(missing.items())]


def benchmarks() -> dict:
    """Every benchmark by name, in the order they run: the ceilings first, so others can be
    shown as a fraction of them."""
    from . import (audit_export, campaign_fanout, claim_ceiling, contact_import, gate, inbound, ingest, journey_tick,
                   policy_replay, segment_count, timeline)

    return {
        "claim_ceiling": claim_ceiling.run,
        "journey_tick": journey_tick.run,
        "campaign_fanout": campaign_fanout.run,
        "ingest_http": ingest.run_http,
        "ingest_batch": ingest.run_batch,
        "inbound_webhook": inbound.run,
        "gate": gate.run,
        "timeline": timeline.run,
        "segment_count": segment_count.run,
        "audit_export": audit_export.run,
        "policy_replay": policy_replay.run,
        "contact_import": contact_import.run,
    }


def run(names: list[str], scale: int, log=lambda line: None) -> list[Figure]:
    """Run the named benchmarks in the bench database (already created); return their figures."""
    figures: list[Figure] = []
    for name, bench in benchmarks().items():
        if name in names:
            log(f"{name}: running at scale {scale} ({SCALE_MEANING[name]})")
            figures += bench(scale, figures=figures, log=log)
    return figures


def find(figures: list[Figure], bench: str, metric: str) -> Figure | None:
    """The figure named, when its benchmark ran in this run."""
    return next((f for f in figures if f.bench == bench and f.metric == metric), None)
