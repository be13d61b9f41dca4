"""Alembic environment: runs on the connection `hims.ops.migrate` hands over (advisory lock held)."""

from alembic import context

from hims.models import metadata
from hims.ops.migrate import skip_partitions

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - alembic CLI used directly
    raise RuntimeError("run migrations through `hims db migrate`")

include_object = skip_partitions(connection)
# End the transaction our own reads began (current revisions, partition list): alembic then
# owns one transaction per migration, and a migration can step out of it with
# `op.get_context().autocommit_block()` (CREATE INDEX CONCURRENTLY). Under an outer transaction
# alembic would run everything in it and refuse autocommit blocks.
if connection.in_transaction():
    connection.commit()
context.configure(
    connection=connection,
    target_metadata=metadata,
    compare_type=True,
    compare_server_default=False,
    include_schemas=False,
    transaction_per_migration=True,
    include_object=include_object,
)
with context.begin_transaction():
    context.run_migrations()
