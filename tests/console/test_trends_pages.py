"""The console's trend proposals: ranked by growth, one proposal's medoids (escaped), terms and timeline, and the
one step to a detector (accept: a detector seeded with the medoids; reject: muted), for analysts only."""
from __future__ import annotations

import asyncio

from stream_app.trend_board import MemoryTrendBoard

HOSTILE = '<script>alert(1)</script> claim your <b>free</b> airdrop'


def proposal(pid, growth, **kw):
    doc = {"id": pid, "kind": "cluster", "first_seen": 1.7e9, "raised_at": 1.7e9, "updated_at": 1.7e9, "size": 14,
           "recent": 7, "growth": growth, "p_value": 1e-9, "status": "open", "version": 3,
           "medoids": [{"id": "p1", "text": HOSTILE}, {"id": "p2", "text": "free airdrop, claim it now"}],
           "terms": ["airdrop", "claim"], "timeline": [[0, 0], [3600, 2], [7200, 5]], "name": "", "description": "",
           "detector": ""}
    doc.update(kw)
    return doc


def console_with_trends(make_console):
    con = make_console()
    con.parts.trends = MemoryTrendBoard([proposal("trend-slow", 2.0), proposal("trend-fast", 8.0, name="Airdrop wave")])
    return con


def test_proposals_ranked_by_growth_and_a_proposal_page_escapes_its_posts(make_console, client_for):
    con = console_with_trends(make_console)
    c = client_for(con, "ian")
    page = c.get("/trends")
    assert page.status_code == 200
    assert page.text.index("Airdrop wave") < page.text.index("trend-slow")
    one = c.get("/trends/trend-slow")
    assert one.status_code == 200
    assert "<script>alert(1)</script>" not in one.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in one.text
    assert "airdrop, claim" in one.text                     # the terms
    assert one.text.count("<rect ") == 3                    # the timeline, one bar a bin
    assert c.get("/trends/trend-nope").status_code == 404


def test_accept_makes_a_detector_seeded_with_the_medoids(make_console, client_for):
    con = console_with_trends(make_console)
    c = client_for(con, "ian")
    r = c.post("/trends/trend-slow/accept", data={"csrf": c.csrf, "detector": "airdrop"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/detectors/airdrop?msg=started"
    assert "airdrop" in con.parts.catalog.detectors
    assert [s["text"] for s in con.parts.catalog.seeds if s["detector"] == "airdrop"] == [
        HOSTILE, "free airdrop, claim it now"]
    p = asyncio.run(con.parts.trends.all())["trend-slow"]
    assert p["status"] == "accepted" and p["detector"] == "airdrop" and p["decided_by"] == "ian"
    assert "trend-slow" not in c.get("/trends").text.split("Decided")[0]   # no longer among the open ones
    taken = c.post("/trends/trend-fast/accept", data={"csrf": c.csrf, "detector": "scam"})   # exists already
    assert taken.status_code == 400 and "exists already" in taken.text


def test_reject_mutes_and_needs_the_token_and_the_role(make_console, client_for):
    con = console_with_trends(make_console)
    mod = client_for(con, "ana")
    assert mod.get("/trends").status_code == 403
    assert mod.post("/trends/trend-fast/reject", data={"csrf": mod.csrf}).status_code == 403
    c = client_for(con, "ian")
    assert c.post("/trends/trend-fast/reject", data={"csrf": "wrong"}).status_code == 403
    r = c.post("/trends/trend-fast/reject", data={"csrf": c.csrf}, follow_redirects=False)
    assert r.status_code == 303
    assert asyncio.run(con.parts.trends.all())["trend-fast"]["status"] == "rejected"
    assert c.post("/trends/trend-fast/reject", data={"csrf": c.csrf}).status_code == 400   # decided already


def test_without_a_trends_topic_the_page_says_so(make_console, client_for):
    con = make_console()
    c = client_for(con, "ian")
    r = c.get("/trends")
    assert r.status_code == 503 and "no trends topic" in r.text


def test_one_wave_from_two_workers_is_one_proposal_and_one_reject_mutes_both(make_console, client_for):
    con = make_console()
    con.parts.trends = MemoryTrendBoard([
        proposal("trend-w1", 4.0, raised_at=100.0, size=10, centre=[1.0, 0.0]),
        proposal("trend-w2", 6.0, raised_at=200.0, size=12, centre=[0.98, 0.2],
                 medoids=[{"id": "q1", "text": "another worker's airdrop post"}])])
    c = client_for(con, "ian")
    listing = c.get("/trends").text
    assert "trend-w1" in listing and 'href="/trends/trend-w2"' not in listing   # one row, the older id
    one = c.get("/trends/trend-w2")                          # the other worker's id finds the wave
    assert one.status_code == 200 and 'id="merged"' in one.text and "trend-w1, trend-w2" in one.text
    assert "another worker&#39;s airdrop post" in one.text and "free airdrop, claim it now" in one.text
    assert ">22<" in one.text                                # sizes summed
    r = c.post("/trends/trend-w2/reject", data={"csrf": c.csrf}, follow_redirects=False)
    assert r.status_code == 303
    decided = sorted(k.decode() for k, _ in con.parts.trends.records if k.decode().endswith("/decision"))
    assert decided == ["trend-w1/decision", "trend-w2/decision"]
    assert asyncio.run(con.parts.trends.all())["trend-w1"]["status"] == "rejected"
