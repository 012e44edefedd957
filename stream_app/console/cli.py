"""``synapse-stream console``: run the console (settings ``SYNAPSE_*`` / ``SYNAPSE_CONSOLE_*``), or manage its users:
``console add-user NAME --role moderator|analyst`` (the password is asked for twice on a terminal, or read from
one line of stdin with ``--password-stdin``), ``console remove-user NAME``, ``console users``, and
``console revoke-sessions NAME`` (ends every session of the user in the console's Redis; ``remove-user`` and
``add-user`` of an existing name, a new password, do it too)."""
from __future__ import annotations

import asyncio
import getpass
import sys

from synapse_stream.exceptions import ConfigError, SynapseError


def add_console_parser(sub) -> None:
    p = sub.add_parser("console", help="the review console (a web app) and its users",
                       description=__doc__.splitlines()[0])
    p.add_argument("--host", help="address to listen on (default: SYNAPSE_CONSOLE_HOST, else 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default: SYNAPSE_CONSOLE_PORT, else 8088)")
    p.add_argument("--users-file", help="users file (default: SYNAPSE_CONSOLE_USERS_FILE, else <data dir>/console-users.json)")
    acts = p.add_subparsers(dest="console_action", metavar="{serve,add-user,remove-user,users,revoke-sessions}")
    acts.add_parser("serve", help="run the console (the default)")
    a = acts.add_parser("add-user", help="add a user, or change one's password and role")
    a.add_argument("name")
    a.add_argument("--role", choices=["moderator", "analyst"], required=True,
                   help="moderator: reviews; analyst: also creates and changes detectors")
    a.add_argument("--password-stdin", action="store_true", help="read the password from one line of stdin")
    acts.add_parser("remove-user", help="remove a user").add_argument("name")
    acts.add_parser("users", help="list the users and their roles")
    acts.add_parser("revoke-sessions", help="end every session of a user (log them out everywhere, now)"
                    ).add_argument("name")
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


def revoke_sessions(settings, name: str) -> int:
    """End every session of ``name`` in the console's Redis; the number ended (SynapseError if Redis is away)."""
    from redis.exceptions import RedisError

    from stream_app.console.sessions_redis import RedisSessions
    from stream_app.worker.state.redis import redis_client

    async def go() -> int:
        client = redis_client(settings, health_check_interval=0)
        try:
            return await RedisSessions(client, settings.redis_prefix).revoke_user(name)
        finally:
            await client.aclose()

    try:
        return asyncio.run(go())
    except (RedisError, OSError) as exc:
        raise SynapseError(f"cannot end {name}'s sessions: Redis at {settings.redis_url}: "
                           f"{str(exc) or type(exc).__name__}") from None


def _revoke_after(settings, name: str, why: str) -> int:
    """After ``why`` (the users file already changed): end the user's sessions, or say loudly that it failed."""
    try:
        n = revoke_sessions(settings, name)
    except SynapseError as exc:
        print(f"warning: {why}, but {exc}; run `synapse-stream console revoke-sessions {name}` once Redis is up",
              file=sys.stderr)
        return 1
    print(f"{n} session{'s' if n != 1 else ''} of {name} ended")
    return 0


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
        existed = users.get(args.name) is not None
        u = users.add(args.name, _password(args.password_stdin), args.role)
        print(f"user {u.name} ({u.role}) saved in {users.path}")
        if existed:          # a new password or role: the sessions made with the old one end
            return _revoke_after(settings, u.name, f"{u.name}'s password changed")
    elif action == "remove-user":
        if not users.remove(args.name):
            raise ConfigError(f"no user {args.name!r} in {users.path}")
        print(f"user {args.name} removed")
        return _revoke_after(settings, args.name, f"{args.name} is removed (no right left)")
    elif action == "revoke-sessions":
        n = revoke_sessions(settings, args.name)
        print(f"{n} session{'s' if n != 1 else ''} of {args.name} ended")
    else:
        for name in users.names():
            u = users.get(name)
            print(f"{name}\t{u.role if u else '?'}")
    return 0
