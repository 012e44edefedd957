"""``synapse-stream console``: run the console (settings ``SYNAPSE_*`` / ``SYNAPSE_CONSOLE_*``), or manage its users:
``console add-user NAME --role moderator|analyst`` (the password is asked for twice on a terminal, or read from
one line of stdin with ``--password-stdin``), ``console remove-user NAME``, ``console users``."""
from __future__ import annotations

import getpass
import sys

from synapse_stream.exceptions import ConfigError


def add_console_parser(sub) -> None:
    p = sub.add_parser("console", help="the review console (a web app) and its users",
                       description=__doc__.splitlines()[0])
    p.add_argument("--host", help="address to listen on (default: SYNAPSE_CONSOLE_HOST, else 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default: SYNAPSE_CONSOLE_PORT, else 8088)")
    p.add_argument("--users-file", help="users file (default: SYNAPSE_CONSOLE_USERS_FILE, else <data dir>/console-users.json)")
    acts = p.add_subparsers(dest="console_action", metavar="{serve,add-user,remove-user,users}")
    acts.add_parser("serve", help="run the console (the default)")
    a = acts.add_parser("add-user", help="add a user, or change one's password and role")
    a.add_argument("name")
    a.add_argument("--role", choices=["moderator", "analyst"], required=True,
                   help="moderator: reviews; analyst: also creates and changes detectors")
    a.add_argument("--password-stdin", action="store_true", help="read the password from one line of stdin")
    acts.add_parser("remove-user", help="remove a user").add_argument("name")
    acts.add_parser("users", help="list the users and their roles")
    p.set_defaults(func=cmd_console)


def _settings(args):
    from pydantic import ValidationError

    from stream_app.console.settings import ConsoleSettings

    over = {k: v for k, v in (("console_host", args.host), ("console_port", args.port),
                              ("console_users_file", args.users_file)) if v is not None}
    try:
        return ConsoleSettings(**over)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(f"invalid settings: {err.get('loc')} {err.get('msg')}") from None


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if sys.stdin is None or not sys.stdin.isatty():
        raise ConfigError("no terminal to ask for the password: pass --password-stdin and write it to stdin")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise ConfigError("the passwords differ")
    return first


def cmd_console(args) -> int:
    settings = _settings(args)
    action = args.console_action or "serve"
    if action == "serve":
        from stream_app.console.app import serve

        serve(settings)
        return 0
    from stream_app.console.auth import UserStore

    users = UserStore(settings.users_path())
    if action == "add-user":
        u = users.add(args.name, _password(args.password_stdin), args.role)
        print(f"user {u.name} ({u.role}) saved in {users.path}")
    elif action == "remove-user":
        if not users.remove(args.name):
            raise ConfigError(f"no user {args.name!r} in {users.path}")
        print(f"user {args.name} removed")
    else:
        for name in users.names():
            u = users.get(name)
            print(f"{name}\t{u.role if u else '?'}")
    return 0
