"""``tapeflow users``: the dashboard's users, their roles and salted password hashes (config.users)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from config.users import ROLES, USERS_ENV, UsersFile, UsersFileError, users_path

users_app = typer.Typer(no_args_is_help=True, help="Dashboard users: who may sign in, and what they may do.")

FILE_HELP = f"The users file (default: ${USERS_ENV}, else data/users.json)."


def _open(file: Optional[Path]) -> UsersFile:
    try:
        return UsersFile(file or users_path())
    except UsersFileError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)


@users_app.command("add")
def add(
    name: str = typer.Argument(..., help="The user's sign-in name."),
    role: str = typer.Option(..., help=f"{' | '.join(ROLES)}: viewers see; traders also change limits, use the "
                                       "kill switch, cancel, flatten and re-arm."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from standard input "
                                        "(scripts) instead of prompting."),
    file: Optional[Path] = typer.Option(None, "--file", help=FILE_HELP),
) -> None:
    """Add a user (or replace a user's password and role)."""
    import sys

    users = _open(file)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    try:
        user = users.add(name, password, role)
    except UsersFileError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    typer.echo(f"user {user.name} ({user.role}) saved in {users.path}")


@users_app.command("remove")
def remove(name: str = typer.Argument(...), file: Optional[Path] = typer.Option(None, "--file", help=FILE_HELP)) -> None:
    """Remove a user."""
    users = _open(file)
    try:
        users.remove(name)
    except UsersFileError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    typer.echo(f"user {name} removed from {users.path}")


@users_app.command("list")
def list_users(file: Optional[Path] = typer.Option(None, "--file", help=FILE_HELP)) -> None:
    """Print every user and role (never a hash)."""
    users = _open(file)
    if not users.configured:
        typer.echo(f"no users in {users.path}: the dashboard is open to local access only")
        return
    for user in users.users():
        typer.echo(f"{user.name}\t{user.role}")
