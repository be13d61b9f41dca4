"""The `hims` command: assembles each domain's Typer app."""

from __future__ import annotations

import re
import sys

import typer
from sqlalchemy.exc import DBAPIError

from hims import composition
from hims.audit import cli as audit_cli
from hims.core.errors import is_connection_error
from hims.fhir import cli as fhir_cli
from hims.identity import cli as identity_cli
from hims.ops import cli as ops_cli
from hims.settings import SettingsError, mask_url

app = typer.Typer(
    name="hims",
    help="AROCORD-HIMS operations command.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
ops_cli.register(app)
app.add_typer(fhir_cli.app, name="fhir")
app.add_typer(audit_cli.app, name="audit")
identity_cli.register(app)


def main() -> None:
    """Entry point: configuration problems exit 2 with one line per variable; an unreachable
    or refusing database exits 1 with one line, not a traceback."""
    composition.wire()
    try:
        app()
    except SettingsError as exc:
        for line in exc.lines:
            print(f"configuration error: {line}", file=sys.stderr)  # noqa: T201
        sys.exit(2)
    except (DBAPIError, OSError) as exc:
        if not (isinstance(exc, DBAPIError) or is_connection_error(exc)):
            raise
        detail = str(getattr(exc, "orig", None) or exc).split("\n")[0]
        detail = re.sub(r"\S+://\S+", lambda m: mask_url(m.group(0)), detail)
        print(f"database error: {type(exc).__name__}: {detail}", file=sys.stderr)  # noqa: T201
        sys.exit(1)
