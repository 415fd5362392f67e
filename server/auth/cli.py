"""``seal-server user …``: accounts on the command line (the first clerk is made here).

    seal-server user add NAME --role ROLE --config FILE [--full-name ..] [--case CASE_NO ...] [--password-stdin]
    seal-server user list --config FILE
    seal-server user assign NAME --case CASE_NO --config FILE

``user add`` asks for the password twice (getpass), or reads one line from stdin with ``--password-stdin``.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable

from sqlalchemy.orm import Session

from server.auth.access import Role
from server.auth.passwords import check_password_rules, hash_password
from server.auth.users import assign_user, assigned_case_nos, get_user, list_users, register_user
from server.errors import UsageError

Out = Callable[[str], None]


def add_user_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    user = commands.add_parser("user", help="user accounts").add_subparsers(dest="action", required=True)
    add = user.add_parser("add", parents=[common], help="create a user")
    add.add_argument("username", metavar="NAME", help="login name: a-z 0-9 . _ -")
    add.add_argument("--role", required=True, choices=[role.value for role in Role])
    add.add_argument("--full-name", default="", help="the person's name, e.g. 王法官")
    add.add_argument(
        "--case", dest="case_nos", action="append", default=[], metavar="CASE_NO", help="assign to this case (repeat)"
    )
    add.add_argument("--password-stdin", action="store_true", help="read the password as one line from stdin")
    user.add_parser("list", parents=[common], help="list users with their roles and cases")
    assign = user.add_parser("assign", parents=[common], help="assign a user to a case")
    assign.add_argument("username", metavar="NAME")
    assign.add_argument("--case", dest="case_no", required=True, metavar="CASE_NO")


def run_user_command(args: argparse.Namespace, session: Session, out: Out) -> int:
    match args.action:
        case "add":
            password = _read_password(args.password_stdin)
            user = register_user(
                session,
                actor=None,
                username=args.username,
                role=Role(args.role),
                password_hash=hash_password(password),
                full_name=args.full_name,
                case_nos=args.case_nos,
            )
            out(f"user {user.username} ({user.role}) added")
        case "list":
            for user in list_users(session):
                cases = "all cases" if user.role == Role.CLERK else ", ".join(assigned_case_nos(session, user=user))
                state = " [disabled]" if user.disabled else ""
                out(f"{user.username}\t{user.role}\t{user.full_name}\t{cases}{state}")
        case "assign":
            user = get_user(session, username=args.username)
            assign_user(session, actor=None, user=user, case_no=args.case_no)
            out(f"user {user.username} assigned to case {args.case_no}")
        case _:
            raise AssertionError(f"unhandled user action {args.action!r}")
    return 0


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        try:
            password = getpass.getpass("Password: ")
            check_password_rules(password)
            if getpass.getpass("Password again: ") != password:
                raise ValueError("the passwords differ")
        except EOFError:  # no terminal, and stdin ended (or was never open): nobody to ask
            raise UsageError(
                "无法读取密码：没有终端可供输入，输入已结束；请用 --password-stdin 从标准输入读取一行密码 / "
                "cannot read the password: no terminal to ask on and the input ended; give it as one line on stdin "
                "with --password-stdin"
            ) from None
    check_password_rules(password)
    return password
