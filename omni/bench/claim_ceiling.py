"""The journey tick's ceiling on this machine: claiming due rows in raw SQL, no ORM, no Celery.

Our implementation of the claim ceiling that ../shared/BENCHMARKS.md describes (its
shared/bench/claim_ceiling.py, beside the repository), in the benchmark database: a table
of 10 x scale enrollments, `scale` of them due; two processes each loop: claim a batch of due
rows with FOR UPDATE SKIP LOCKED, advance them (step + 1, next_run_at + 1 day) with
UPDATE ... RETURNING, and log each claim by COPY in a step log (one row per step, as an audit
row would be). Duplicate claims (a step logged twice) must be 0. PostgreSQL only.
"""
import multiprocessing
import time

from django.db import connection

from . import Figure
from .database import psycopg_conninfo

PROCESSES = 2
# As the shared script's default: large enough to amortize a round trip, small enough that the
# two processes share the due rows evenly.
BATCH = 500
TABLES = "bench_cc_enrollment, bench_cc_step_log"


def run(scale: int, *, figures, log) -> list[Figure]:
    if connection.vendor != "postgresql":
        log("claim_ceiling: skipped, it needs PostgreSQL (FOR UPDATE SKIP LOCKED)")
        return []
    due, total = scale, 10 * scale
    conninfo = psycopg_conninfo()
    _create_tables(conninfo, total, due)
    context = multiprocessing.get_context("spawn")
    claimed = context.Queue()
    started = time.perf_counter()
    processes = [context.Process(target=claim_until_done, args=(conninfo, BATCH, claimed)) for _ in range(PROCESSES)]
    for process in processes:
        process.start()
    steps = sum(claimed.get() for _ in processes)
    for process in processes:
        process.join()
    seconds = time.perf_counter() - started
    logged, duplicates = _count_log(conninfo)
    _drop_tables(conninfo)
    notes = (f"{PROCESSES} procs, batch {BATCH}, SKIP LOCKED + UPDATE RETURNING + COPY log; {total} rows, "
             f"{due} due; {seconds:.2f}s; logged {logged}; duplicate claims {duplicates}")
    return [
        Figure("claim_ceiling", "steps_per_s", steps / seconds, "steps/s", steps, subject="peer", notes=notes),
        Figure("claim_ceiling", "duplicate_claims", duplicates, "steps", steps, subject="peer"),
    ]


def claim_until_done(conninfo: str, batch: int, claimed) -> None:
    """One claiming process: claim, advance and log batches until no row is due; put the count."""
    import psycopg

    steps = 0
    with psycopg.connect(conninfo) as conn:
        while True:
            with conn.transaction():
                rows = conn.execute("""
                    WITH due AS (
                        SELECT id FROM bench_cc_enrollment
                        WHERE state = 'active' AND next_run_at <= now()
                        ORDER BY next_run_at LIMIT %s
                        FOR UPDATE SKIP LOCKED)
                    UPDATE bench_cc_enrollment e SET step = e.step + 1, next_run_at = e.next_run_at + interval '1 day'
                    FROM due WHERE e.id = due.id
                    RETURNING e.id, e.step""", [batch]).fetchall()
                if not rows:
                    break
                with conn.cursor().copy("COPY bench_cc_step_log (enrollment_id, step) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
                steps += len(rows)
    claimed.put(steps)


def _create_tables(conninfo: str, total: int, due: int) -> None:
    import psycopg

    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLES}")
        conn.execute("""CREATE TABLE bench_cc_enrollment (id bigserial PRIMARY KEY, contact_id bigint NOT NULL,
                        step int NOT NULL DEFAULT 0, next_run_at timestamptz NOT NULL, state text NOT NULL)""")
        conn.execute("""CREATE TABLE bench_cc_step_log (id bigserial PRIMARY KEY, enrollment_id bigint NOT NULL,
                        step int NOT NULL, at timestamptz NOT NULL DEFAULT now())""")
        # The due rows a minute in the past, the others a day ahead.
        conn.execute("""INSERT INTO bench_cc_enrollment (contact_id, step, next_run_at, state)
                        SELECT g, 0, CASE WHEN g <= %s THEN now() - interval '1 minute'
                                          ELSE now() + interval '1 day' END, 'active'
                        FROM generate_series(1, %s) g""", [due, total])
        conn.execute("CREATE INDEX bench_cc_due ON bench_cc_enrollment (next_run_at) WHERE state = 'active'")
        conn.execute("VACUUM ANALYZE bench_cc_enrollment")


def _count_log(conninfo: str) -> tuple[int, int]:
    import psycopg

    with psycopg.connect(conninfo) as conn:
        logged = conn.execute("SELECT count(*) FROM bench_cc_step_log").fetchone()[0]
        duplicates = conn.execute("""SELECT count(*) FROM (SELECT enrollment_id, step FROM bench_cc_step_log
                                     GROUP BY 1, 2 HAVING count(*) > 1) d""").fetchone()[0]
    return logged, duplicates


def _drop_tables(conninfo: str) -> None:
    import psycopg

    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLES}")
