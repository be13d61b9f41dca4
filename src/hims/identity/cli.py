"""`hims users ...`: staff accounts from the command line (the only way to create the first admin)."""

from __future__ import annotations

import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession

from hims.core.db import Database
from hims.core.errors import HimsError
from hims.core.kv import KeyValueStore, make_store
from hims.core.permissions import Role
from hims.core.security import Actor
from hims.identity import service
from hims.identity.schemas import UserCreate, UserSummary
from hims.settings import Settings, load_settings

console = Console(stderr=True)
out = Console()
users_app = typer.Typer(help="Staff accounts: create, list, disable, enable, unlock.", no_args_is_help=True)

T = TypeVar("T")


def register(app: typer.Typer) -> None:
    """Attach `hims users` to the root app."""
    app.add_typer(users_app, name="users")


def _actor() -> Actor:
    return Actor.system(f"cli:{getpass.getuser()}", channel="cli")


def _run(work: Callable[[AsyncSession, KeyValueStore, Settings], Awaitable[T]]) -> T:
    """Run ``work`` in one transaction against the configured database and kv store."""
    from hims.core.commands import database_url

    settings = load_settings()

    async def main(url: str) -> T:
        db = Database(url, pool_size=2)
        kv = make_store(
            settings.redis_url,
            settings.redis_password.get_secret_value() if settings.redis_password else None,
        )
        try:
            async with db.transaction() as session:
                return await work(session, kv, settings)
        finally:
            await kv.close()
            await db.dispose()

    with database_url(settings) as url:
        try:
            return asyncio.run(main(url))
        except HimsError as exc:
            console.print(f"error: {exc.detail}", markup=False)
            for item in exc.errors:
                console.print(f"  {item.get('field')}: {item.get('message')}", markup=False)
            raise typer.Exit(1) from None


def read_password() -> str:
    """The new password: prompted twice on a terminal, else one line of stdin (never argv)."""
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != first:
            console.print("error: the passwords differ")
            raise typer.Exit(1)
        return first
    return sys.stdin.readline().rstrip("\r\n")


@users_app.command("create")
def create(
    username: Annotated[str, typer.Option("--username", help="Login name (case-insensitive).")],
    role: Annotated[list[Role], typer.Option("--role", help="Role; repeat for several.")],
    email: Annotated[
        str | None, typer.Option("--email", help="E-mail address (for password resets).")
    ] = None,
    display_name: Annotated[str, typer.Option("--display-name", help="Name shown in the UI.")] = "",
) -> None:
    """Create an account; the password is read from stdin or prompted (never an argument)."""
    password = read_password()
    try:
        data = UserCreate(
            username=username, password=password, roles=list(role), email=email, display_name=display_name
        )
    except ValidationError as exc:
        for error in exc.errors():
            field = ".".join(str(p) for p in error["loc"])
            console.print(f"error: {field}: {error['msg']}", markup=False)
        raise typer.Exit(1) from None

    async def work(session: AsyncSession, kv: KeyValueStore, settings: Settings) -> Any:
        return await service.create_user(session=session, settings=settings, actor=_actor(), data=data)

    user = _run(work)
    out.print(f"created user {user.username} ({', '.join(user.roles)}) id={user.id}", markup=False)


@users_app.command("list")
def list_users() -> None:
    """List accounts with roles and status."""

    async def work(session: AsyncSession, kv: KeyValueStore, settings: Settings) -> list[UserSummary]:
        users = await service.list_users(session=session, actor=_actor(), limit=10000)
        return [UserSummary.model_validate(u) for u in users]

    table = Table("username", "roles", "active", "id", title="Users")
    for user in _run(work):
        table.add_row(user.username, ", ".join(user.roles), "yes" if user.active else "no", str(user.id))
    out.print(table)


def _set_active(username: str, active: bool) -> None:
    async def work(session: AsyncSession, kv: KeyValueStore, settings: Settings) -> Any:
        actor = _actor()
        user = await service.find_user(session=session, actor=actor, username=username)
        return await service.set_active(session=session, kv=kv, actor=actor, user_id=user.id, active=active)

    user = _run(work)
    out.print(f"{'enabled' if active else 'disabled'} user {user.username}", markup=False)


@users_app.command("disable")
def disable(username: Annotated[str, typer.Argument(help="The account to disable.")]) -> None:
    """Disable an account (its tokens and sessions stop working at once)."""
    _set_active(username, False)


@users_app.command("enable")
def enable(username: Annotated[str, typer.Argument(help="The account to re-enable.")]) -> None:
    """Re-enable a disabled account."""
    _set_active(username, True)


@users_app.command("unlock")
def unlock(
    username: Annotated[str | None, typer.Argument(help="The account to unlock.")] = None,
    ip: Annotated[str | None, typer.Option("--ip", help="Unlock a client address instead.")] = None,
) -> None:
    """Lift a login lockout of an account (or of a client IP with --ip)."""
    if (username is None) == (ip is None):
        console.print("error: give a USERNAME or --ip ADDRESS")
        raise typer.Exit(2)

    async def work(session: AsyncSession, kv: KeyValueStore, settings: Settings) -> str:
        actor = _actor()
        if ip is not None:
            await service.unlock_ip(session=session, kv=kv, actor=actor, ip=ip)
            return f"unlocked address {ip}"
        assert username is not None
        user = await service.find_user(session=session, actor=actor, username=username)
        await service.unlock(session=session, kv=kv, actor=actor, user_id=user.id)
        return f"unlocked user {user.username}"

    out.print(_run(work), markup=False)
