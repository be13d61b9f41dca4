"""PHI access log: hash chain, append-only, and a function to log writes made outside the app.

**Hash chain.** Four columns: ``chain``, ``seq``, ``prev_hash``, ``row_hash`` with
``row_hash = sha256(prev_hash || canonical text of the row)`` (docs/audit.md). One chain per
database session, so concurrent writers never wait for each other: the BEFORE INSERT trigger
``phi_access_log_chain`` keeps the session's chain head (chain, seq, hash) in the session-level
setting ``hims.audit_chain``. A session's first row starts a chain (a number from
``phi_access_log_chain_seq``, seq 0, 32 zero bytes before it); each later row takes seq + 1 and the
previous row's hash. PostgreSQL reverts a setting changed in a transaction or savepoint that rolls
back, so rolled-back rows never enter a chain. The canonical text is frozen here; `hims audit
verify` computes it with its own copy (``hims.audit.repository.CANONICAL_TEXT``), so replacing this
function in the database is itself detected.

**Append-only.** A statement trigger refuses UPDATE, DELETE and TRUNCATE for every role, superuser
included. Like any ENABLE trigger it does not fire with ``session_replication_role = replica``
(a superuser restoring a backup, logical replication).

**Writes from outside the application.** ``hims_log_outside_write()`` (a trigger function) logs one
row per INSERT/UPDATE/DELETE made without the ``hims.actor`` setting. It is not attached to any
table here: `hims.audit.outside_writes` builds the CREATE TRIGGER statements, for the migration
that makes the application set ``hims.actor``.

**Locks.** The columns are added nullable (catalog only) with the trigger in one short transaction
(lock_timeout 5 s); from its commit on, new rows are chained. The rows already there get a chain of
their own, in id order (one UPDATE outside that transaction: it takes no lock that blocks inserts).
The unique (chain, seq) index is built CONCURRENTLY; NOT NULL is proven by a CHECK constraint
validated without blocking writes, so SET NOT NULL does not scan. A failed run can be run again:
every step skips what is already done.

Revision ID: 0015_audit_chain
Revises: 0014_duplicate_blocking
Create Date: 2026-12-07 12:00:00
"""

# SQL is assembled from fixed fragments and the schema name quote_ident() returned.
# ruff: noqa: S608

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_audit_chain"
down_revision: str | Sequence[str] | None = "0014_duplicate_blocking"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "uq_phi_access_log_chain_seq"
NOT_NULL_CHECK = "ck_phi_access_log_chain_not_null"
ZERO_HASH = "'\\x" + "00" * 32 + "'::bytea"


def canonical(r: str, chain: str = "chain", seq: str = "seq") -> str:
    """The canonical text of the row whose columns are ``{r}name`` (frozen: the chain depends on it);
    ``chain`` and ``seq`` name other columns when the row's own are not filled in yet.

    Comma-separated; text columns as SQL literals (quote_nullable: quotes and backslashes doubled,
    NULL as the bare word NULL); uuid and inet columns empty when NULL (their text is never empty and
    holds no comma); occurred_at in UTC with microseconds whatever the session's TimeZone/DateStyle.
    """
    return (
        f"concat_ws(',', {r}id, to_char({r}occurred_at AT TIME ZONE 'UTC', "
        '\'YYYY-MM-DD"T"HH24:MI:SS.US"Z"\'), '
        f"coalesce({r}user_id::text, ''), quote_nullable({r}username), "
        f"coalesce({r}patient_id::text, ''), quote_nullable({r}action), "
        f"quote_nullable({r}resource_type), quote_nullable({r}resource_id), "
        f"coalesce({r}ip_address::text, ''), quote_nullable({r}request_id), "
        f"quote_nullable({r}channel), quote_nullable({r}outcome), {r}{chain}, {r}{seq})"
    )


def _chain_function(schema: str) -> str:
    # The sequence is schema-qualified: a temporary sequence of the same name (pg_temp comes first
    # in the search path) must not feed the chain numbers. Assignments, not PERFORM: a PL/pgSQL
    # assignment is evaluated as a simple expression, PERFORM runs a whole query.
    return f"""
        CREATE OR REPLACE FUNCTION phi_access_log_chain() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
          head text := current_setting('hims.audit_chain', true);
        BEGIN
          IF head IS NULL OR head = '' THEN
            -- Once per session. A log restored without its sequence has chain numbers ahead of
            -- it: skip them rather than fail every insert of this session on the unique index.
            LOOP
              NEW.chain := nextval('{schema}.phi_access_log_chain_seq'::regclass);
              EXIT WHEN NOT EXISTS (SELECT FROM {schema}.phi_access_log WHERE chain = NEW.chain);
            END LOOP;
            NEW.seq := 0;
            NEW.prev_hash := {ZERO_HASH};
          ELSE
            NEW.chain := split_part(head, ':', 1)::bigint;
            NEW.seq := split_part(head, ':', 2)::bigint + 1;
            NEW.prev_hash := decode(split_part(head, ':', 3), 'hex');
          END IF;
          NEW.row_hash := sha256(NEW.prev_hash || convert_to({canonical("NEW.")}, 'UTF8'));
          head := set_config('hims.audit_chain',
                             NEW.chain || ':' || NEW.seq || ':' || encode(NEW.row_hash, 'hex'), false);
          RETURN NEW;
        END
        $$
    """


REFUSE_CHANGE = """
    CREATE OR REPLACE FUNCTION phi_access_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      RAISE EXCEPTION 'phi_access_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Rows of the PHI access log are never changed or removed (docs/audit.md).';
    END
    $$
"""


def _outside_write_function(schema: str) -> str:
    # SECURITY DEFINER: the row is logged even when the writer may not insert into the log itself
    # (a maintenance role); session_user still names who connected. The fixed search_path, with
    # pg_temp last, keeps a temporary table named phi_access_log from catching the row.
    return f"""
        CREATE OR REPLACE FUNCTION hims_log_outside_write() RETURNS trigger
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = {schema}, pg_temp AS $$
        DECLARE
          r jsonb;
        BEGIN
          IF TG_OP = 'DELETE' THEN r := to_jsonb(OLD); ELSE r := to_jsonb(NEW); END IF;
          INSERT INTO phi_access_log
            (user_id, username, patient_id, action, resource_type, resource_id, ip_address,
             channel, outcome)
          VALUES
            (NULL, session_user, (r ->> TG_ARGV[1])::uuid,
             CASE TG_OP WHEN 'INSERT' THEN 'create' WHEN 'UPDATE' THEN 'update' ELSE 'delete' END,
             TG_ARGV[0], r ->> 'id', inet_client_addr(), 'db', 'success');
          RETURN NULL;
        END
        $$
    """


def _backfill() -> str:
    # The rows written before the chain existed, chained in id order. A hash chain is sequential:
    # the window aggregate hims_chain_fold carries sha256(previous || text) from row to row.
    return f"""
        WITH c AS (SELECT nextval('phi_access_log_chain_seq'::regclass) AS chain),
        numbered AS (
          SELECT l.*, c.chain AS new_chain, row_number() OVER (ORDER BY l.id) - 1 AS new_seq
          FROM phi_access_log l CROSS JOIN c WHERE l.chain IS NULL
        ),
        hashed AS (
          SELECT id, new_chain, new_seq,
                 pg_temp.hims_chain_fold(convert_to({canonical("", "new_chain", "new_seq")}, 'UTF8'))
                   OVER (ORDER BY id ROWS UNBOUNDED PRECEDING) AS new_hash
          FROM numbered
        ),
        linked AS (
          SELECT id, new_chain, new_seq, new_hash,
                 coalesce(lag(new_hash) OVER (ORDER BY id), {ZERO_HASH}) AS new_prev
          FROM hashed
        )
        UPDATE phi_access_log l
        SET chain = linked.new_chain, seq = linked.new_seq,
            prev_hash = linked.new_prev, row_hash = linked.new_hash
        FROM linked WHERE l.id = linked.id
    """


def upgrade() -> None:
    bind = op.get_bind()
    schema = bind.execute(sa.text("SELECT quote_ident(current_schema())")).scalar_one()
    # Fail fast rather than queue every PHI read behind a lock held by a long transaction;
    # `hims db migrate` can simply be run again (docs/operations.md).
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute(
        "ALTER TABLE phi_access_log ADD COLUMN IF NOT EXISTS chain bigint, "
        "ADD COLUMN IF NOT EXISTS seq bigint, ADD COLUMN IF NOT EXISTS prev_hash bytea, "
        "ADD COLUMN IF NOT EXISTS row_hash bytea"
    )
    op.execute(
        "CREATE SEQUENCE IF NOT EXISTS phi_access_log_chain_seq AS bigint OWNED BY phi_access_log.chain"
    )
    op.execute(_chain_function(schema))
    op.execute(
        "CREATE OR REPLACE TRIGGER phi_access_log_chain BEFORE INSERT ON phi_access_log "
        "FOR EACH ROW EXECUTE FUNCTION phi_access_log_chain()"
    )
    # NOT VALID: checked for new rows only (the trigger fills them), no scan under this lock.
    op.execute(
        f"ALTER TABLE phi_access_log DROP CONSTRAINT IF EXISTS {NOT_NULL_CHECK}, "
        f"ADD CONSTRAINT {NOT_NULL_CHECK} CHECK (chain IS NOT NULL AND seq IS NOT NULL "
        "AND prev_hash IS NOT NULL AND row_hash IS NOT NULL) NOT VALID"
    )
    op.execute(REFUSE_CHANGE)
    op.execute(_outside_write_function(schema))

    with op.get_context().autocommit_block():
        op.execute(
            "CREATE OR REPLACE FUNCTION pg_temp.hims_chain_step(bytea, bytea) RETURNS bytea "
            "LANGUAGE sql IMMUTABLE STRICT AS 'SELECT sha256($1 || $2)'"
        )
        op.execute(
            "CREATE OR REPLACE AGGREGATE pg_temp.hims_chain_fold(bytea) "
            f"(SFUNC = pg_temp.hims_chain_step, STYPE = bytea, INITCOND = '\\x{'00' * 32}')"
        )
        op.execute(_backfill())
        op.execute("DROP AGGREGATE pg_temp.hims_chain_fold(bytea)")
        op.execute("DROP FUNCTION pg_temp.hims_chain_step(bytea, bytea)")
        valid = bind.execute(
            sa.text("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:n)"), {"n": INDEX}
        ).scalar()
        if valid is False:  # left behind by an interrupted concurrent build
            op.drop_index(INDEX, table_name="phi_access_log", postgresql_concurrently=True)
        op.create_index(
            INDEX,
            "phi_access_log",
            ["chain", "seq"],
            unique=True,
            postgresql_concurrently=True,
            if_not_exists=True,
        )
        # SHARE UPDATE EXCLUSIVE: inserts go on while it scans.
        op.execute(f"ALTER TABLE phi_access_log VALIDATE CONSTRAINT {NOT_NULL_CHECK}")

    op.execute("SET LOCAL lock_timeout = '5s'")
    # The validated CHECK proves there is no NULL: no scan under the ACCESS EXCLUSIVE lock.
    op.execute(
        "ALTER TABLE phi_access_log ALTER COLUMN chain SET NOT NULL, ALTER COLUMN seq SET NOT NULL, "
        "ALTER COLUMN prev_hash SET NOT NULL, ALTER COLUMN row_hash SET NOT NULL"
    )
    op.execute(f"ALTER TABLE phi_access_log DROP CONSTRAINT {NOT_NULL_CHECK}")
    op.execute(
        "CREATE OR REPLACE TRIGGER phi_access_log_append_only "
        "BEFORE UPDATE OR DELETE OR TRUNCATE ON phi_access_log "
        "FOR EACH STATEMENT EXECUTE FUNCTION phi_access_log_refuse_change()"
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute("DROP TRIGGER IF EXISTS phi_access_log_append_only ON phi_access_log")
    op.execute("DROP TRIGGER IF EXISTS phi_access_log_chain ON phi_access_log")
    op.execute("DROP FUNCTION IF EXISTS hims_log_outside_write()")
    op.execute("DROP FUNCTION IF EXISTS phi_access_log_refuse_change()")
    op.execute("DROP FUNCTION IF EXISTS phi_access_log_chain()")
    op.drop_index(INDEX, table_name="phi_access_log", if_exists=True)
    # The sequence is owned by the chain column and goes with it.
    op.execute(
        "ALTER TABLE phi_access_log DROP COLUMN IF EXISTS chain, DROP COLUMN IF EXISTS seq, "
        "DROP COLUMN IF EXISTS prev_hash, DROP COLUMN IF EXISTS row_hash"
    )
