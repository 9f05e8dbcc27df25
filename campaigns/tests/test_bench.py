"""The benchmark runs at smoke scale and reports honest counts (speed is not judged here)."""
import pytest

from campaigns.management.commands.bench import run_benchmark


@pytest.mark.django_db
def test_the_tick_benchmark_reports_every_figure_and_no_duplicates():
    figures = {f["metric"]: f for f in run_benchmark(20)}

    assert figures["duplicate_messages"]["value"] == 0
    assert figures["steps_per_second"]["n"] == 20 * 2 + 20 * 2
    # Two of the twenty never opted in to SMS marketing: 20 emails and 18 SMS.
    assert figures["celery_messages_per_1000_deliveries"]["n"] == 38
    assert all(f["bench"] == "journey_tick" and f["value"] >= 0 for f in figures.values())
