"""The console's pages and API without a browser (memory parts): log-in, roles, CSRF, the review API with
leases, undo and publishing, what an item's JSON holds (no audit mark), the detector pages, a new detector,
security headers, hostile text escaped."""
from __future__ import annotations

import asyncio
import time

from starlette.routing import Route

from stream_app.console.items import ReviewItem
from stream_app.console.publisher import MemorySink, Publisher
from synapse_stream.messages import candidate_message, dumps, parse_label

from console_helpers import PASSWORD, csrf_of, login


def add(console, n: int, det: str = "scam", reason: str = "ibg", text: str = "post {i}", **extra):
    items = []
    for i in range(n):
        doc = candidate_message(det, f"p{i}", text.format(i=i), 0.7, ["s1"], reason, 0.0)
        doc.update(extra)
        items.append(ReviewItem(det, f"p{i}", doc))
    return asyncio.run(console.parts.queue.add(items, time.time()))


def api(c, path: str, body=None):
    return c.post(path, json=body or {}, headers={"X-CSRF-Token": c.csrf})


def test_log_in_sends_each_role_home_and_a_wrong_password_is_refused(make_console, client_for):
    con = make_console()
    c = client_for(con)
    assert c.get("/review", follow_redirects=False).headers["location"] == "/login"
    assert login(c, "ana", "wrong password").status_code == 401
    assert login(c, "nobody", PASSWORD).status_code == 401
    r = login(c, "ana")
    assert r.status_code == 303 and r.headers["location"] == "/review"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert client_for(con, "ian").get("/", follow_redirects=False).headers["location"] == "/detectors"


def test_passwords_are_stored_as_argon2_hashes(make_console):
    con = make_console()
    raw = con.settings.users_path().read_text()
    assert PASSWORD not in raw and "$argon2id$" in raw


def test_every_change_needs_the_csrf_token(make_console, client_for):
    con = make_console()
    c = client_for(con, "ana")
    assert c.post("/api/queue/lease", json={}).status_code == 403
    assert c.post("/api/queue/lease", json={}, headers={"X-CSRF-Token": "forged"}).status_code == 403
    assert c.post("/login", data={"user": "ana", "password": PASSWORD}).status_code == 403
    assert c.post("/logout", data={}).status_code == 403
    other_site = c.post("/api/queue/lease", json={}, headers={"X-CSRF-Token": c.csrf, "Origin": "http://evil.example"})
    assert other_site.status_code == 403
    assert api(c, "/api/queue/lease").status_code == 200


def test_every_post_route_is_guarded(make_console):
    con = make_console()
    posts = [r for r in con.app.routes if isinstance(r, Route) and "POST" in (r.methods or ())]
    assert posts and all(getattr(r.endpoint, "guard", None) == "action" for r in posts), \
        [r.path for r in posts if getattr(r.endpoint, "guard", None) != "action"]


def test_moderators_do_not_see_the_analysts_pages(make_console, client_for):
    con = make_console()
    c = client_for(con, "ana")
    assert c.get("/detectors").status_code == 403
    assert c.post("/detectors/scam/pause", data={"csrf": c.csrf}).status_code == 403
    assert con.parts.catalog.detectors["scam"]["paused"] is False


def test_review_leases_prefetch_decide_undo_and_publish(make_console, client_for):
    con = make_console(console_prefetch=3)
    add(con, 5)
    ana, bo = client_for(con, "ana"), client_for(con, "bo")
    a = api(ana, "/api/queue/lease").json()
    b = api(bo, "/api/queue/lease").json()
    assert [i["key"] for i in a["items"]] == ["scam\np0", "scam\np1", "scam\np2"]
    assert [i["key"] for i in b["items"]] == ["scam\np3", "scam\np4"]           # never ana's
    assert a["items"][0]["guidelines"].startswith("Posts promising")
    assert api(bo, "/api/queue/decide", {"key": "scam\np0", "label": 1}).status_code == 409
    for i, label in ((0, 1), (1, 0)):
        assert api(ana, "/api/queue/decide", {"key": f"scam\np{i}", "label": label}).json()["ok"]
    undone = api(ana, "/api/queue/undo").json()
    assert undone["ok"] and undone["item"]["key"] == "scam\np1"
    assert api(ana, "/api/queue/decide", {"key": "scam\np1", "label": 1}).json()["ok"]
    assert api(ana, "/api/queue/decide", {"key": "scam\np2", "label": 2}).status_code == 400
    sink = MemorySink()
    sent = asyncio.run(Publisher(con.parts.queue, sink).publish_due(time.time() + 11))
    assert sent == 2
    labels = sorted((parse_label(dumps(m)).post_id, m["label"], m["labeler"]) for m in sink.messages)
    assert labels == [("p0", 1, "moderator:ana"), ("p1", 1, "moderator:ana")]


def test_an_audit_item_looks_like_any_other(make_console, client_for):
    con = make_console()
    add(con, 1, reason="audit", why={"seeds": [["s1", 0.3]], "probability": 0.12, "model_version": 4})
    c = client_for(con, "ana")
    r = api(c, "/api/queue/lease")
    (item,) = r.json()["items"]
    assert "audit" not in r.text
    assert item["why"]["source"] == "model" and item["why"]["score"] == 0.12


def test_the_review_page_is_a_shell_the_script_fills(make_console, client_for):
    con = make_console()
    add(con, 1, text="<script>alert(1)</script>")
    c = client_for(con, "ana")
    page = c.get("/review")
    assert page.status_code == 200 and "<script>alert" not in page.text
    h = page.headers
    assert "script-src 'self'" in h["content-security-policy"] and "unsafe-inline" not in h["content-security-policy"]
    assert h["x-frame-options"] == "DENY" and h["x-content-type-options"] == "nosniff"
    assert c.get("/static/review.js").status_code == 200 and c.get("/static/htmx.min.js").status_code == 200
    # the text travels as JSON data; the page puts it in with textContent
    assert api(c, "/api/queue/lease").json()["items"][0]["text"] == "<script>alert(1)</script>"


def test_text_flags_warn_of_hidden_direction_and_walls():
    from stream_app.console.routes_review import text_flags

    assert text_flags("abc\u202edcba") == ["direction controls"]
    assert text_flags("a\u200bb") == ["invisible characters"]
    assert text_flags("x" * 20_000) == ["20,000 characters"]


def test_detector_pages_show_the_numbers(make_console, client_for):
    con = make_console()
    add(con, 2)
    c = client_for(con, "ian")
    listing = c.get("/detectors")
    assert listing.status_code == 200 and 'href="/detectors/scam"' in listing.text
    page = c.get("/detectors/scam")
    assert page.status_code == 200
    for part in ("Live precision", "Recall (audit estimate)", "Budget used", "Queries per source", "Classifier",
                 "Recent detections", "Over time", 'hx-get="/detectors/scam/live"'):
        assert part in page.text, part
    assert c.get("/detectors/scam/live").status_code == 200
    assert c.get("/detectors/nope").status_code == 404


def test_an_analyst_pauses_resumes_and_changes_settings(make_console, client_for):
    con = make_console()
    c = client_for(con, "ian")
    assert c.post("/detectors/scam/pause", data={"csrf": c.csrf}, follow_redirects=False).status_code == 303
    assert con.parts.catalog.detectors["scam"]["paused"] is True
    c.post("/detectors/scam/resume", data={"csrf": c.csrf})
    assert con.parts.catalog.detectors["scam"]["paused"] is False
    r = c.post("/detectors/scam/settings", data={"csrf": c.csrf, "tau": "0.55", "description": "new words"})
    assert r.status_code == 200 and con.parts.catalog.detectors["scam"]["tau"] == 0.55
    bad = c.post("/detectors/scam/settings", data={"csrf": c.csrf, "tau": "7"})
    assert bad.status_code == 400 and "tau" in bad.text


def test_a_new_detector_from_typed_and_uploaded_seeds(make_console, client_for):
    con = make_console()
    c = client_for(con, "ian")
    form = c.get("/detectors/new")
    assert "No LLM endpoint is configured" in form.text
    step2 = c.post("/detectors/new", data={"csrf": c.csrf, "name": "hate-x", "description": "<b>targeted</b> hate"})
    assert step2.status_code == 200 and "&lt;b&gt;targeted&lt;/b&gt;" in step2.text
    r = c.post("/detectors/new/start", data={"csrf": c.csrf, "name": "hate-x", "description": "<b>targeted</b> hate",
                                             "more": "first seed\n\nsecond seed\n"},
               files={"upload": ("seeds.jsonl", b'{"text": "third seed"}\n', "application/octet-stream")},
               follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/detectors/hate-x?msg=started"
    assert con.parts.catalog.detectors["hate-x"]["description"] == "<b>targeted</b> hate"
    seeds = [(s["text"], s["origin"]) for s in con.parts.catalog.seeds]
    assert seeds == [("first seed", "manual"), ("second seed", "manual"), ("third seed", "manual")]
    page = c.get("/detectors/hate-x")
    assert "<b>targeted" not in page.text and "&lt;b&gt;targeted&lt;/b&gt; hate" in page.text
    again = c.post("/detectors/new", data={"csrf": c.csrf, "name": "hate-x", "description": "x"})
    assert again.status_code == 400 and "exists already" in again.text
    empty = c.post("/detectors/new/start", data={"csrf": c.csrf, "name": "y", "description": "z", "more": ""})
    assert empty.status_code == 400 and "at least one seed" in empty.text and "y" not in con.parts.catalog.detectors


def test_a_new_detector_from_llm_suggestions_edited_and_removed(make_console, client_for):
    con = make_console()

    class Suggester:
        def suggest(self, description):
            return ["llm one", "llm two", "llm three"]

        def diagnose(self, texts):      # the real one: synapse_stream.seed_report (tests/core/test_seed_report.py)
            return [f"{len(texts)} seeds, 1 distinct", "warning: <b>narrow</b>"]

    con.parts.suggester = Suggester()
    c = client_for(con, "ian")
    step2 = c.post("/detectors/new", data={"csrf": c.csrf, "name": "scam2", "description": "d", "use_llm": "1"})
    assert step2.text.count('name="seed"') == 3
    assert "3 seeds, 1 distinct" in step2.text and 'class="warn"' in step2.text     # the seed diagnostics, shown
    assert "<b>narrow</b>" not in step2.text and "&lt;b&gt;narrow" in step2.text      # and escaped
    c.post("/detectors/new/start", data={"csrf": c.csrf, "name": "scam2", "description": "d",
                                         "seed": ["llm one", "llm two, edited", "llm three"],
                                         "seed_llm": ["llm one", "llm two", "llm three"], "drop_2": "1",
                                         "more": "typed"})
    assert [(s["text"], s["origin"]) for s in con.parts.catalog.seeds] == [
        ("llm one", "synthetic"), ("llm two, edited", "manual"), ("typed", "manual")]


def test_every_fixed_path_under_detectors_is_a_reserved_name(make_console):
    from stream_app.worker.settings import RESERVED_DETECTOR_NAMES

    con = make_console()
    fixed = {r.path.split("/")[2] for r in con.app.routes if isinstance(r, Route) and r.path.startswith("/detectors/")
             and not r.path.split("/")[2].startswith("{")}
    assert fixed == {"new", "live"} and fixed <= RESERVED_DETECTOR_NAMES


def test_a_reserved_name_is_refused_on_the_form_and_news_works(make_console, client_for):
    con = make_console()
    c = client_for(con, "ian")
    for name in ("new", "live", ".."):
        r = c.post("/detectors/new", data={"csrf": c.csrf, "name": name, "description": "d"})
        assert r.status_code == 400 and "is reserved" in r.text, name
        r = c.post("/detectors/new/start", data={"csrf": c.csrf, "name": name, "description": "d", "more": "a seed"})
        assert r.status_code == 400 and "is reserved" in r.text, name
    assert set(con.parts.catalog.detectors) == {"scam"} and con.parts.catalog.seeds == []
    r = c.post("/detectors/new/start", data={"csrf": c.csrf, "name": "news", "description": "fake news",
                                             "more": "a seed"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/detectors/news?msg=started"
    page = c.get("/detectors/news")
    assert page.status_code == 200 and 'hx-get="/detectors/news/live"' in page.text
    assert c.get("/detectors/news/live").status_code == 200
    assert c.post("/detectors/news/pause", data={"csrf": c.csrf}, follow_redirects=False).status_code == 303
    assert con.parts.catalog.detectors["news"]["paused"] is True
    assert c.get("/detectors/new").status_code == 200 and "New detector" in c.get("/detectors/new").text


def test_log_out_returns_the_leases(make_console, client_for):
    con = make_console()
    add(con, 2)
    ana, bo = client_for(con, "ana"), client_for(con, "bo")
    assert len(api(ana, "/api/queue/lease").json()["items"]) == 2
    ana.post("/logout", data={"csrf": ana.csrf})
    assert ana.get("/review", follow_redirects=False).status_code == 303
    assert len(api(bo, "/api/queue/lease").json()["items"]) == 2


def test_a_removed_user_loses_the_session(make_console, client_for):
    con = make_console()
    c = client_for(con, "ana")
    con.parts.users.remove("ana")
    assert api(c, "/api/queue/lease").status_code == 401
    assert csrf_of(c.get("/login").text)
