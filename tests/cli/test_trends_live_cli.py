"""``synapse-stream trends list|show|accept|reject`` against an in-memory trends topic and detector catalog."""
from __future__ import annotations

import argparse
import asyncio
import json

import pytest

from stream_app.cli import build_parser
from stream_app.console.catalog import MemoryCatalog
from stream_app.trend_board import MemoryTrendBoard, merge
from stream_app.trends_live_cli import run
from synapse_stream.exceptions import SynapseError


def proposal(pid, growth, **kw):
    doc = {"id": pid, "kind": "cluster", "first_seen": 1.7e9, "raised_at": 1.7e9, "updated_at": 1.7e9, "size": 12,
           "recent": 6, "growth": growth, "p_value": 1e-9, "status": "open", "version": 1,
           "medoids": [{"id": "p1", "text": "claim your free airdrop"}, {"id": "p2", "text": "free airdrop, claim now"}],
           "terms": ["airdrop", "claim"], "name": "", "description": "", "detector": ""}
    doc.update(kw)
    return doc


def args(*argv) -> argparse.Namespace:
    return build_parser().parse_args(["trends", *argv])


def test_list_ranks_open_proposals_by_growth(capsys):
    board = MemoryTrendBoard([proposal("trend-a", 2.0), proposal("trend-b", 9.0, name="Airdrop scam"),
                              proposal("trend-c", 5.0)])
    asyncio.run(board.decide("trend-c", "rejected"))
    assert asyncio.run(run(args("list"), board, MemoryCatalog())) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert [r.split()[0] for r in rows] == ["trend-b", "trend-a"]
    assert "Airdrop scam" in rows[0]
    asyncio.run(run(args("list", "--all"), board, MemoryCatalog()))
    assert "rejected" in capsys.readouterr().out


def test_accept_creates_a_detector_seeded_with_the_medoids(capsys):
    board = MemoryTrendBoard([proposal("trend-a", 2.0, name="Free airdrop scam",
                                       description="Posts urging people to claim an airdrop.")])
    cat = MemoryCatalog()
    assert asyncio.run(run(args("accept", "trend-a", "--tau", "0.55"), board, cat)) == 0
    assert "trend-free-airdrop-scam" in capsys.readouterr().out
    d = cat.detectors["trend-free-airdrop-scam"]
    assert d["description"] == "Posts urging people to claim an airdrop." and d["tau"] == 0.55
    assert [s["text"] for s in cat.seeds] == ["claim your free airdrop", "free airdrop, claim now"]
    assert {s["detector"] for s in cat.seeds} == {"trend-free-airdrop-scam"}
    p = asyncio.run(board.all())["trend-a"]
    assert p["status"] == "accepted" and p["detector"] == "trend-free-airdrop-scam" and p["decided_by"] == "cli"
    with pytest.raises(SynapseError, match="accepted already"):
        asyncio.run(run(args("accept", "trend-a"), board, cat))


def test_reject_records_the_decision_and_a_bad_id_is_one_error_line(capsys):
    board = MemoryTrendBoard([proposal("trend-a", 2.0)])
    assert asyncio.run(run(args("reject", "trend-a"), board, MemoryCatalog())) == 0
    assert asyncio.run(board.all())["trend-a"]["status"] == "rejected"
    with pytest.raises(SynapseError, match="no proposal 'trend-x'"):
        asyncio.run(run(args("accept", "trend-x"), board, MemoryCatalog()))


def test_accept_into_a_name_in_use_fails_and_decides_nothing():
    board = MemoryTrendBoard([proposal("trend-a", 2.0)])
    cat = MemoryCatalog([{"name": "taken"}])
    with pytest.raises(SynapseError, match="exists already"):
        asyncio.run(run(args("accept", "trend-a", "--detector", "taken"), board, cat))
    assert asyncio.run(board.all())["trend-a"]["status"] == "open" and cat.seeds == []


def test_merge_skips_bad_records_and_honours_tombstones():
    recs = [(b"trend-a", json.dumps(proposal("trend-a", 1.0)).encode()), (b"trend-b", b"not json"),
            (b"trend-c", json.dumps(proposal("trend-c", 1.0)).encode()), (b"trend-c", None),
            (b"trend-a/decision", json.dumps({"id": "trend-a", "status": "bogus"}).encode())]
    props = merge(recs)
    assert list(props) == ["trend-a"] and props["trend-a"]["status"] == "open"


def test_a_workers_record_round_trips_through_the_board():
    from synapse_stream.trends.proposals import Proposal

    p = Proposal("trend-w", "dupes", 1.0, 2.0, 3.0, 9, 5, 4.5, 1e-8,
                 medoids=[{"id": "x", "text": "win a free phone now " * 40}], terms=["free phone"],
                 timeline=[[0.0, 1.0]], centre=[0.123456, 0.98765])
    rec = p.record()
    assert len(rec["medoids"][0]["text"]) == 500 and rec["centre"] == [0.1235, 0.9877]
    assert Proposal.from_record(rec).centre == [0.1235, 0.9877]
    board = MemoryTrendBoard([rec])
    cat = MemoryCatalog()
    d = asyncio.run(run(args("accept", "trend-w"), board, cat))
    assert d == 0 and cat.detectors["trend-w"]["description"] == "An emerging trend found in the stream (terms: free phone)"
