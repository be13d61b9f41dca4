"""Alembic environment: runs on the connection `hims.ops.migrate` hands over (advisory lock held)."""

from alembic import context

from hims.models import metadata
from hims.ops.migrate import skip_partitions

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - alembic CLI used directly
    raise RuntimeError("run migrations through `hims db migrate`")

context.configure(
    connection=connection,
    target_metadata=metadata,
    compare_type=True,
    compare_server_default=False,
    include_schemas=False,
    transaction_per_migration=True,
    include_object=skip_partitions(connection),
)
with context.begin_transaction():
    context.run_migrations()
