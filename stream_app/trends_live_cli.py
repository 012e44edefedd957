"""``synapse-stream trends list|show|accept|reject``: the proposals on the ``trends`` topic, and decisions on them.

``list`` prints the open proposals ranked by growth (``--all``: every status); ``show ID`` one as JSON;
``accept ID [--detector NAME]`` creates a detector whose seeds are the proposal's medoid posts and whose
description is the LLM's (else its terms), then records the decision; ``reject ID`` mutes the group on every
worker. A bad id or a detector name in use ends with one ``error:`` line and exit code 2.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json

from synapse_stream.exceptions import SynapseError


def add_live_actions(acts) -> None:
    def common(a):
        a.add_argument("--broker", metavar="URL", help="bootstrap (default: SYNAPSE_BROKER_URL)")
        a.add_argument("--topic-prefix", help="topic prefix (default: SYNAPSE_TOPIC_PREFIX, else 'synapse.')")
        a.set_defaults(func=cmd_live)
        return a

    common(acts.add_parser("list", help="open proposals ranked by growth")).add_argument(
        "--all", action="store_true", help="accepted and rejected ones too")
    common(acts.add_parser("show", help="one proposal as JSON")).add_argument("id")
    a = common(acts.add_parser("accept", help="make a detector of a proposal (its medoids as seeds)"))
    a.add_argument("id")
    a.add_argument("--detector", help="the detector's name (default: from the proposal's name, else its id)")
    a.add_argument("--tau", type=float, default=None, help="the detector's τ (default: the detector default)")
    a.add_argument("--by", default="cli", help="who decided (kept with the decision)")
    r = common(acts.add_parser("reject", help="mute a proposal's group"))
    r.add_argument("id")
    r.add_argument("--by", default="cli")


def _when(ts) -> str:
    try:
        return dt.datetime.fromtimestamp(float(ts), dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
    except (TypeError, ValueError, OverflowError, OSError):
        return "?"


def print_list(props: list[dict]) -> None:
    print(f"{'proposal':20s} {'status':8s} {'size':>5s} {'growth':>7s} {'first seen (UTC)':16s}  name / terms")
    for p in props:
        label = p.get("name") or ", ".join((p.get("terms") or [])[:5])
        label = " ".join(str(label).split())[:70]
        print(f"{p['id']:20s} {p.get('status', 'open'):8s} {int(p.get('size') or 0):5d} "
              f"{float(p.get('growth') or 0):7.1f} {_when(p.get('first_seen')):16s}  {label}")


async def run(args, board=None, catalog=None) -> int:
    from stream_app.detectors_cli import _settings
    from stream_app.trend_board import KafkaTrendBoard, accept, find, ranked, reject

    if board is None or catalog is None:
        from stream_app.console.catalog import KafkaCatalog

        settings = _settings(args)
        board, catalog = board or KafkaTrendBoard(settings), catalog or KafkaCatalog(settings)
    if args.action == "list":
        try:
            props = await board.all()
        except (OSError, asyncio.TimeoutError, TimeoutError) as exc:
            raise SynapseError(f"cannot read the trends topic: {str(exc) or type(exc).__name__}") from None
        print_list(ranked(props, None if args.all else "open"))
        return 0
    if args.action == "show":
        p = find(await board.all(), args.id)
        if p is None:
            raise SynapseError(f"no proposal {args.id!r}")
        print(json.dumps({k: v for k, v in p.items() if k != "centre"}, indent=2, ensure_ascii=False))
        return 0
    if args.action == "accept":
        extra = {"tau": args.tau} if args.tau is not None else None
        d = await accept(board, catalog, args.id, detector=args.detector, by=args.by, settings=extra)
        print(f"proposal {args.id} accepted: detector {d['name']} created with its medoids as seeds")
        return 0
    await reject(board, args.id, by=args.by)
    print(f"proposal {args.id} rejected: its group is muted")
    return 0


def cmd_live(args) -> int:
    from aiokafka.errors import KafkaError

    try:
        return asyncio.run(run(args))
    except (OSError, asyncio.TimeoutError, TimeoutError, KafkaError) as exc:
        raise SynapseError(f"cannot reach the broker for the trends topic: {str(exc) or type(exc).__name__}") from None
