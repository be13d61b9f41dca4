"""PHI access log benchmark: `hims audit verify` speed, and what the log and its hash chain cost.

Creates its own database on `HIMS_BENCH_SERVER_URL` (see bench/README.md), migrates it, then:

1. **insert**: the chain trigger's own cost. One session inserts single rows (one INSERT statement
   each, as the application does, in a PL/pgSQL loop: no client round trips in the figure) with
   the trigger enabled and disabled, alternated, best of 5: µs per row of each and the difference.
2. **verify**: a log of `--rows` rows (default 1,000,000) is written through the chain trigger by
   `INSERT ... SELECT generate_series` statements of 10,000 rows from `--writers` sessions at once
   (one chain each, interleaved like pooled connections' chains), then `VACUUM ANALYZE` (an old
   log has been vacuumed). `hims audit verify` (the console script) runs with `--jobs 1` and
   `--jobs 2`, best of 2 each; its own rows/s figure is printed.
3. **reads**: `--connections` asyncpg connections (default 16) loop the FHIR read statement over
   `--resources` stored Observations, for `--seconds` per round: with its PHI access log row
   (`hims.fhir.repository.read_logged`, "log on"), without (`read`, "log off"), and with the log
   row but the chain trigger disabled ("chain off"; the chain columns are made nullable for the
   bench, the (chain, seq) index stays). Modes alternate, best of 3 rounds each. Prints reads/s,
   the on/off and chain-off/off ratios at the database, and PostgreSQL CPU per read.
4. **api**: what a reader of the API feels. `hims serve --workers 2` on the same database and
   `--clients` keep-alive HTTP clients (default 32) loop `GET /fhir/R4/Observation/{id}` over the
   stored Observations for `--seconds` per round, with the PHI access log as it is ("log on"),
   with its rows dropped by a `BEFORE INSERT` trigger that returns NULL ("log off": the request
   does everything else the same), and with the hash chain trigger disabled ("chain off"). Modes
   alternate, best of 3 rounds each. Prints reads/s, server and PostgreSQL CPU per read, and the
   on/off ratio (**goal: ≥ 0.87**).

.venv/bin/python bench/audit.py [--rows N] [--connections N] [--clients N] [--seconds S]
                                [--async-commit] [--parts insert,reads,api,verify]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import psutil

from _fhir_common import (
    Conn,
    CpuMeter,
    cleaning_up,
    current_tree,
    fresh_database,
    postmaster_pid,
    serving,
    tree_token,
)
from hims.core.security import Actor
from hims.fhir.repository import read, read_logged

HIMS = str(Path(sys.executable).parent / "hims")
STATEMENT_ROWS = 10_000

# One row per transaction, as the application writes the log (a FHIR read is one autocommit
# statement): PL/pgSQL prepares its expressions once per transaction, so a loop inside one
# transaction would hide most of the trigger's cost.
_INSERT_LOOP = """
CREATE PROCEDURE pg_temp.insert_rows(n int) LANGUAGE plpgsql AS $$
BEGIN
  FOR i IN 1..n LOOP
    INSERT INTO phi_access_log (user_id, username, patient_id, action, resource_type, resource_id,
                                ip_address, request_id, channel, outcome)
    VALUES ('9125ddf2-c1a3-459b-a15d-10a36d4107b6', 'dr.bench', gen_random_uuid(), 'read',
            'Observation', 'Observation/' || i, '10.1.2.3', md5(i::text), 'fhir', 'success');
    COMMIT;
  END LOOP;
END $$
"""

_GENERATE = (
    "INSERT INTO phi_access_log (occurred_at, user_id, username, patient_id, action, resource_type, "
    "resource_id, ip_address, request_id, channel, outcome) "
    "SELECT now() - interval '1 year' + (($1::bigint + n) * interval '25 ms'), "
    "md5('u' || (n % 300))::uuid, 'user' || (n % 300), gen_random_uuid(), "
    "(ARRAY['read','search','update'])[1 + n % 3], 'Observation', 'Observation/' || ($1::bigint + n), "
    "('10.0.' || (n % 200) || '.' || (n % 250))::inet, md5(n::text), 'fhir', 'success' "
    "FROM generate_series(1, $2::int) AS n"
)


async def chain_columns_nullable(url: str, nullable: bool) -> None:
    """With the chain trigger disabled rows have no chain: the bench's own database lets them in
    while it compares, then empties the log and puts NOT NULL back."""
    action = "DROP" if nullable else "SET"
    conn = await asyncpg.connect(url)
    try:
        if not nullable:
            await conn.execute("SET session_replication_role = replica")
            await conn.execute("TRUNCATE phi_access_log")
        await conn.execute(
            "ALTER TABLE phi_access_log "
            + ", ".join(
                f"ALTER COLUMN {c} {action} NOT NULL" for c in ("chain", "seq", "prev_hash", "row_hash")
            )
        )
    finally:
        await conn.close()


def _set_chain_trigger(enabled: bool) -> str:
    return f"ALTER TABLE phi_access_log {'ENABLE' if enabled else 'DISABLE'} TRIGGER phi_access_log_chain"


async def bench_insert(url: str, rows: int = 10_000, rounds: int = 5) -> None:
    admin = await asyncpg.connect(url)
    try:
        best = {True: float("inf"), False: float("inf")}
        for _ in range(rounds):
            for enabled in (True, False):
                await admin.execute(_set_chain_trigger(enabled))
                # A new session each time (a new chain); no WAL flush wait: the figure is CPU.
                conn = await asyncpg.connect(url, server_settings={"synchronous_commit": "off"})
                try:
                    await conn.execute(_INSERT_LOOP)
                    await conn.execute("CALL pg_temp.insert_rows(200)")  # warm caches
                    backend = psutil.Process(await conn.fetchval("SELECT pg_backend_pid()"))
                    before = sum(backend.cpu_times()[:2])
                    await conn.execute(f"CALL pg_temp.insert_rows({rows:d})")
                    cpu = (sum(backend.cpu_times()[:2]) - before) / rows * 1e6
                finally:
                    await conn.close()
                best[enabled] = min(best[enabled], cpu)
        await admin.execute(_set_chain_trigger(True))
    finally:
        await admin.close()
    print(
        f"insert: {best[True]:.1f} µs of PostgreSQL CPU per one-row transaction with the chain trigger, "
        f"{best[False]:.1f} µs without: the trigger costs {best[True] - best[False]:.1f} µs per row "
        f"(best of {rounds})"
    )


async def generate_log(url: str, total: int, writers: int) -> None:
    started = time.perf_counter()
    statements = list(range(0, total, STATEMENT_ROWS))

    async def writer() -> None:
        conn = await asyncpg.connect(url)
        try:
            while statements:
                offset = statements.pop()
                await conn.execute(_GENERATE, offset, min(STATEMENT_ROWS, total - offset))
        finally:
            await conn.close()

    await asyncio.gather(*(writer() for _ in range(writers)))
    elapsed = time.perf_counter() - started
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("VACUUM ANALYZE phi_access_log")
        chains = await conn.fetchval("SELECT count(DISTINCT chain) FROM phi_access_log")
    finally:
        await conn.close()
    print(
        f"log: {total:,} rows in {chains} chains written through the trigger by {writers} sessions "
        f"(INSERT ... SELECT generate_series) in {elapsed:.1f} s ({total / elapsed:,.0f} rows/s)"
    )


def bench_verify(url: str) -> None:
    env = {**os.environ, "DATABASE_URL": url, "LOG_LEVEL": "warning", "HIMS_ENV": "development"}
    for jobs in (1, 2):
        best = 0.0
        line = ""
        for _ in range(2):
            result = subprocess.run(
                [HIMS, "audit", "verify", "--jobs", str(jobs)],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                raise SystemExit(
                    f"hims audit verify failed ({result.returncode}): {result.stdout}{result.stderr}"
                )
            first = result.stdout.splitlines()[0]
            found = re.search(r"\(([\d,]+) rows/s\)", first)
            rate = float(found.group(1).replace(",", "")) if found else 0.0
            if rate > best:
                best, line = rate, first
        print(f"verify --jobs {jobs}: {line}")


async def seed_resources(url: str, count: int) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "INSERT INTO fhir_resources (resource_type, id, version_id, last_updated, deleted, patient_ref, "
            "resource) SELECT 'Observation', o.id, 1, now(), false, 'Patient/' || o.patient, "
            "jsonb_build_object('resourceType', 'Observation', 'id', o.id, 'status', 'final', "
            "'code', jsonb_build_object('coding', jsonb_build_array(jsonb_build_object("
            "'system', 'http://loinc.org', 'code', '8867-4', 'display', 'Heart rate'))), "
            "'subject', jsonb_build_object('reference', 'Patient/' || o.patient), "
            "'effectiveDateTime', '2026-11-29T08:00:00Z', "
            "'valueQuantity', jsonb_build_object('value', 60 + o.n % 40, 'unit', 'beats/minute', "
            "'system', 'http://unitsofmeasure.org', 'code', '/min')) "
            "FROM (SELECT n, gen_random_uuid()::text AS id, gen_random_uuid() AS patient "
            "FROM generate_series(1, $1::int) AS n) o",
            count,
        )
        await conn.execute("VACUUM ANALYZE fhir_resources")
        return [
            r[0]
            for r in await conn.fetch("SELECT id FROM fhir_resources WHERE resource_type = 'Observation'")
        ]
    finally:
        await conn.close()


async def bench_reads(
    url: str, connections: int, seconds: float, resources: int, *, async_commit: bool, rounds: int = 3
) -> None:
    ids = await seed_resources(url, resources)
    actor = Actor(
        user_id=uuid.uuid4(),
        username="dr.bench",
        client_ip="10.1.2.3",
        request_id=uuid.uuid4().hex,
        channel="fhir",
    )
    settings = {"synchronous_commit": "off"} if async_commit else {}
    conns = [await asyncpg.connect(url, server_settings=settings) for _ in range(connections)]
    backends = [psutil.Process(await c.fetchval("SELECT pg_backend_pid()")) for c in conns]
    admin = await asyncpg.connect(url)
    try:

        async def round_(logged: bool) -> tuple[float, float]:
            deadline = time.perf_counter() + seconds
            done = [0]

            async def loop(conn: asyncpg.Connection, start: int) -> None:
                i = start
                while time.perf_counter() < deadline:
                    key = ids[i % len(ids)]
                    found = await (
                        read_logged(conn, "Observation", key, actor)
                        if logged
                        else read(conn, "Observation", key)
                    )
                    assert found is not None
                    done[0] += 1
                    i += 7

            cpu_before = sum(sum(p.cpu_times()[:2]) for p in backends)
            started = time.perf_counter()
            await asyncio.gather(*(loop(c, n * 997) for n, c in enumerate(conns)))
            elapsed = time.perf_counter() - started
            cpu = sum(sum(p.cpu_times()[:2]) for p in backends) - cpu_before
            return done[0] / elapsed, cpu / done[0] * 1e6

        for logged in (True, False):  # warm up: plans, caches
            await round_(logged)
        best: dict[str, tuple[float, float]] = {}
        for _ in range(rounds):
            for mode in ("log on", "log off", "chain off"):
                await admin.execute(_set_chain_trigger(mode != "chain off"))
                rate, cpu = await round_(mode != "log off")
                if rate > best.get(mode, (0.0, 0.0))[0]:
                    best[mode] = (rate, cpu)
        await admin.execute(_set_chain_trigger(True))
    finally:
        for c in conns:
            await c.close()
        await admin.close()
    for mode, (rate, cpu) in best.items():
        print(f"reads, {mode:9s}: {rate:8,.0f} reads/s  (PostgreSQL CPU {cpu:5.1f} µs per read)")
    on, off, bare = best["log on"][0], best["log off"][0], best["chain off"][0]
    print(
        f"reads: log on / log off = {on / off:.3f} (goal ≥ 0.87); chain off / log off = {bare / off:.3f}; "
        f"{connections} connections, {len(ids):,} resources, best of {rounds} rounds of {seconds:g} s"
        + (", synchronous_commit off" if async_commit else "")
    )


# "log off" for the API bench: every log row is dropped before it is written (BEFORE triggers fire
# in name order, so this one runs before phi_access_log_chain); the application does the same work.
_DROP_LOG = """
CREATE OR REPLACE FUNCTION bench_drop_log() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RETURN NULL; END $$;
CREATE OR REPLACE TRIGGER a_bench_drop_log BEFORE INSERT ON phi_access_log
  FOR EACH ROW EXECUTE FUNCTION bench_drop_log();
"""


async def bench_api(url: str, clients: int, seconds: float, resources: int, rounds: int = 3) -> None:
    ids = await seed_resources(url, resources)
    tree = current_tree()
    admin = await asyncpg.connect(url)
    try:
        async with serving(tree, url, workers=2, pool=8) as server:
            token = await tree_token(tree, url)
            postmaster = await postmaster_pid(url)
            database = url.rsplit("/", 1)[1].split("?", 1)[0]

            async def round_() -> tuple[float, dict[str, float]]:
                conns = [Conn("127.0.0.1", server.port, "/fhir/R4", token) for _ in range(clients)]
                done = [0]

                async def loop(conn: Conn, start: int, until: float) -> None:
                    i = start
                    while time.perf_counter() < until:
                        status, body = await conn.request("GET", f"/Observation/{ids[i % len(ids)]}")
                        if status != 200:
                            raise RuntimeError(f"read answered {status}: {body[:200]!r}")
                        done[0] += 1
                        i += 7

                try:
                    warm = time.perf_counter() + 1
                    await asyncio.gather(*(loop(c, n * 997, warm) for n, c in enumerate(conns)))
                    done[0] = 0
                    meter = CpuMeter(server.pid, database, postmaster)
                    started = time.perf_counter()
                    until = started + seconds
                    await asyncio.gather(*(loop(c, n * 991, until) for n, c in enumerate(conns)))
                    elapsed = time.perf_counter() - started
                    return done[0] / elapsed, meter.stop(done[0])
                finally:
                    for c in conns:
                        await c.close()

            best: dict[str, tuple[float, dict[str, float]]] = {}
            for _ in range(rounds):
                for mode in ("log on", "log off", "chain off"):
                    await admin.execute(_set_chain_trigger(mode != "chain off"))
                    if mode == "log off":
                        await admin.execute(_DROP_LOG)
                    try:
                        rate, cpu = await round_()
                    finally:
                        await admin.execute("DROP TRIGGER IF EXISTS a_bench_drop_log ON phi_access_log")
                    if rate > best.get(mode, (0.0, {}))[0]:
                        best[mode] = (rate, cpu)
            await admin.execute(_set_chain_trigger(True))
    finally:
        await admin.close()
    for mode, (rate, cpu) in best.items():
        print(
            f"API reads, {mode:9s}: {rate:8,.0f} reads/s  (server CPU {cpu['server_ms']:.2f} ms, "
            f"PostgreSQL {cpu['postgres_ms']:.2f} ms per read; machine busy {cpu['busy_cores']:.2f} cores)"
        )
    on, off, bare = best["log on"][0], best["log off"][0], best["chain off"][0]
    print(
        f"API reads: log on / log off = {on / off:.3f} (goal ≥ 0.87); "
        f"chain off / log off = {bare / off:.3f}; "
        f"hims serve --workers 2, {clients} clients, {len(ids):,} Observations, best of {rounds} rounds "
        f"of {seconds:g} s"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="log rows for the verify run")
    parser.add_argument("--writers", type=int, default=4, help="sessions writing the log (chains)")
    parser.add_argument("--connections", type=int, default=16, help="concurrent readers (database)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent HTTP clients (api)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one read round")
    parser.add_argument("--resources", type=int, default=5_000, help="stored resources read")
    parser.add_argument(
        "--async-commit",
        action="store_true",
        help="readers commit without waiting for the WAL flush (shows what the log row's fsync costs)",
    )
    parser.add_argument(
        "--parts", default="insert,reads,api,verify", help="comma-separated: insert, reads, api, verify"
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))

    url = await fresh_database("hims_bench_audit")
    await chain_columns_nullable(url, True)
    if "insert" in parts:
        await bench_insert(url)
    if "reads" in parts:
        await bench_reads(url, args.connections, args.seconds, args.resources, async_commit=args.async_commit)
    if "api" in parts:
        await bench_api(url, args.clients, args.seconds, args.resources)
    await chain_columns_nullable(url, False)
    if "verify" in parts:
        await generate_log(url, args.rows, args.writers)
        await asyncio.to_thread(bench_verify, url)


if __name__ == "__main__":
    asyncio.run(cleaning_up(main()))
