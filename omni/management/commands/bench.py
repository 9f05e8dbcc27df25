"""Omni's one benchmark command: every layer's figures, in a database of their own.

    python manage.py bench [--only NAME ...] [--scale N] [--keep-db]

Prints one JSON line per figure on stdout ({"bench", "metric", "value", "unit", "n",
"subject", "notes"}) and a readable table on stderr. Run it with DATABASE_URL pointing at
PostgreSQL for real figures; on SQLite it is a smoke run (claim_ceiling needs PostgreSQL).
"""
import json
import sys

from django.core.management.base import BaseCommand, CommandError

from omni import bench
from omni.bench.database import bench_database

DEFAULT_SCALE = 1000


class Command(BaseCommand):
    help = "Run Omni's benchmarks (" + ", ".join(bench.SCALE_MEANING) + ") and print their figures."

    def add_arguments(self, parser):
        parser.add_argument("--only", action="append", default=[], metavar="NAME",
                            help="Run only these benchmarks (repeat it or give a comma list): "
                                 + ", ".join(bench.SCALE_MEANING))
        parser.add_argument("--scale", type=int, default=DEFAULT_SCALE,
                            help=f"Size each benchmark reads its own way (default {DEFAULT_SCALE}; 50000 is the "
                                 "issue's full scale): " + "; ".join(f"{k}: {v}" for k, v in bench.SCALE_MEANING.items()))
        parser.add_argument("--keep-db", action="store_true", help="Keep the benchmark database afterwards.")

    def handle(self, *args, only, scale, keep_db, **options):
        names = [name.strip() for value in only for name in value.split(",") if name.strip()] or list(bench.SCALE_MEANING)
        unknown = sorted(set(names) - set(bench.SCALE_MEANING))
        if unknown:
            raise CommandError(f"Unknown benchmark(s): {', '.join(unknown)}. Known: {', '.join(bench.SCALE_MEANING)}.")
        missing = bench.missing_packages(names)
        if missing:
            raise CommandError("These benchmarks need packages that are not installed: " + "; ".join(missing)
                               + ". `make install-dev` installs everything the tests and benchmarks use.")
        if scale < 1:
            raise CommandError("--scale must be at least 1.")

        def log(line):
            sys.stderr.write(line + "\n")

        with bench_database(keep=keep_db) as name:
            log(f"benchmark database: {name}")
            figures = bench.run(names, scale, log=log)
        for figure in figures:
            self.stdout.write(json.dumps(figure.as_json()))
        write_table(figures, sys.stderr)


def write_table(figures, out) -> None:
    bench_width = max([15, *(len(f.bench) + 1 for f in figures)])
    metric_width = max([34, *(len(f.metric) + 1 for f in figures)])
    out.write(f"\n{'bench':<{bench_width}}{'metric':<{metric_width}}{'value':>14}  {'unit':<14}{'n':>9}\n")
    for figure in figures:
        out.write(f"{figure.bench:<{bench_width}}{figure.metric:<{metric_width}}{figure.value:>14,.3f}  "
                  f"{figure.unit:<14}{figure.n:>9}\n")
    for figure in figures:
        if figure.notes:
            out.write(f"  {figure.bench}.{figure.metric}: {figure.notes}\n")
