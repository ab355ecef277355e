"""`annotator user ...`: accounts (add, list, disable, enable, set-role, set-password)."""
from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from annotator.service.workspace import DEFAULT_PROJECT
from pipelines.cli.common import JsonOpt, ProjectOpt, cli_actor, command, given, open_ws
from pipelines.cli.render import emit

user_app = typer.Typer(no_args_is_help=True, help="Manage annotator accounts.")


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return typer.prompt("password", hide_input=True, confirmation_prompt=True)


PasswordStdin = Annotated[bool, typer.Option("--password-stdin",
                                             help="Read the password from stdin.")]


@command(user_app, "add")
def user_add_cmd(
    name: str,
    role: Annotated[Optional[str], typer.Option("--role", help="admin or annotator (the default).")] = None,
    password_stdin: PasswordStdin = False,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
):
    """Add an account (password from a prompt, or --password-stdin)."""
    from annotator.service import auth

    ws = open_ws(project)
    who = auth.create_account(ws, name, _read_password(password_stdin),
                               **given(role=role))
    emit({"name": who.name, "role": who.role, "id": who.id}, as_json, f"added {who.role} {who.name}")


@command(user_app, "list")
def user_list_cmd(project: ProjectOpt = DEFAULT_PROJECT, as_json: JsonOpt = False):
    """List accounts with their role, whether they are disabled and their label counts."""
    from annotator.service import accounts

    rows = accounts.users(open_ws(project)).to_dict("records")
    emit(rows, as_json, "\n".join(
        f"{u['name']}\t{u['role']}{'  (disabled)' if u['disabled'] else ''}\t{u['labels']} labels"
        for u in rows) or "no users")


@command(user_app, "disable")
def user_disable_cmd(name: str, project: ProjectOpt = DEFAULT_PROJECT, as_json: JsonOpt = False):
    """Stop an account from signing in; its open sessions end at once."""
    from annotator.service import accounts

    accounts.set_disabled(open_ws(project), name, True)
    emit({"name": name, "disabled": True}, as_json, f"disabled {name}")


@command(user_app, "enable")
def user_enable_cmd(name: str, project: ProjectOpt = DEFAULT_PROJECT, as_json: JsonOpt = False):
    """Let a disabled account sign in again."""
    from annotator.service import accounts

    accounts.set_disabled(open_ws(project), name, False)
    emit({"name": name, "disabled": False}, as_json, f"enabled {name}")


@command(user_app, "set-role")
def user_set_role_cmd(
    name: str,
    role: Annotated[str, typer.Argument(help="admin or annotator.")],
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
):
    """Change an account's role (a signed-in browser gets it on its next page action)."""
    from annotator.service import accounts

    accounts.set_role(open_ws(project), name, role, by=cli_actor())
    emit({"name": name, "role": role}, as_json, f"{name} is now {role}")


@command(user_app, "set-password")
def user_set_password_cmd(
    name: str,
    password_stdin: PasswordStdin = False,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
):
    """Reset an account's password; its open sessions end."""
    from annotator.service import accounts

    ws = open_ws(project)
    accounts.set_password(ws, name, _read_password(password_stdin))
    emit({"name": name, "password_changed": True}, as_json, f"new password set for {name}")
