"""The console on the embedded stack, driven through Debian's headless Chromium: a Faust worker finds candidates
in the posts topic, the console (its own consumer groups, the Redis queue, the labels publisher) shows them.

A moderator logs in and labels 20 candidates with the keyboard, undoes one; the verdicts reach the worker's
ledger and the positive ones become confirmed seeds; a second moderator, logged in meanwhile, never sees the
first one's leased items; posts carrying script and HTML render as text; an analyst creates a detector from the
page and its first candidates arrive on the review page. ``SYNAPSE_SCREENSHOTS=1`` saves the pages to
docs/console/ (with the numbers of this run).
"""
from __future__ import annotations

import asyncio
import json
import time

import pytest

from browser_helpers import Served, chrome, log_in, needs_browser, press, shot, shown_key, wait
from console_helpers import PASSWORD, fast_users
from stream_app.devstack.demo import LiveLoop

pytestmark = [pytest.mark.stack, pytest.mark.browser, needs_browser]

SCAM = {"name": "scam", "tau": 0.5, "d_max": 40, "candidates": "ibg", "audit_rate": 0.0,
        "description": "Posts promising free crypto: an airdrop, tokens, a giveaway. Not news about crypto."}
SEED = "free crypto airdrop claim your tokens now"
WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa quebec "
         "romeo sierra tango uniform victor whiskey xray").split()
HOSTILE = {"h1": f"{SEED} <script>window.__pwned = 1</script>",
           "h2": f'{SEED} <img src="x" onerror="window.__pwned = 2"> <b>bold</b>'}
POSTS = {**{f"s{i}": f"{SEED} {w} {w}2" for i, w in enumerate(WORDS)}, **HOSTILE,
         **{f"o{i}": t for i, t in enumerate(["lovely weather for a long walk", "the match last night was great",
                                              "my cat sleeps all day long", "baking bread on a sunday morning"])}}
UNDO = 2.0


async def send_posts(loop: LiveLoop, posts: dict[str, str]) -> None:
    for i, (pid, text) in enumerate(posts.items()):
        await loop.send_raw(loop.topics.posts, json.dumps({"id": pid, "text": text}).encode(), pid.encode(),
                            i % loop.partitions)


async def redis_state(loop: LiveLoop, fn):
    import redis.asyncio as aioredis

    from stream_app.worker.state import RedisState

    r = aioredis.from_url(loop.redis_url, decode_responses=True)
    try:
        return await fn(RedisState(r, "synapse:"), r)
    finally:
        await r.aclose()


def until(fn, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from stream_app.console.app import build_parts, create_app
    from stream_app.console.settings import ConsoleSettings

    tmp = tmp_path_factory.mktemp("console-stack")
    loop = LiveLoop(tmp / "loop", detectors=[SCAM], embedder="hashing-64", partitions=2, workers=1)
    loop.start()
    try:
        settings = ConsoleSettings(_env_file=None, broker_url=f"kafka://{loop.bootstrap}", redis_url=loop.redis_url,
                                   embedded_broker=loop.tansu_quirks, topic_prefix=loop.prefix,
                                   partitions=loop.partitions, console_secret="stack-test",
                                   console_users_file=str(tmp / "users.json"), console_undo_seconds=UNDO,
                                   console_stats_seconds=2.0, embedder="hashing-64")
        parts = build_parts(settings)
        parts.users = fast_users(settings.users_path())
        for name, role in (("ana", "moderator"), ("bo", "moderator"), ("ian", "analyst")):
            parts.users.add(name, PASSWORD, role)
        with Served(create_app(settings, parts)) as served:
            asyncio.run(loop.send_seeds("scam", [SEED]))
            asyncio.run(send_posts(loop, POSTS))
            yield loop, served.url
    finally:
        asyncio.run(loop.close())
        loop.stop()


def test_moderators_label_through_the_console_and_the_loop_learns(stack):
    from selenium.webdriver.common.by import By

    loop, url = stack
    ana = chrome()
    bo = None
    try:
        log_in(ana, url, "ana", PASSWORD)
        wait(ana, lambda d: shown_key(d) is not None, timeout=60, what="the first candidate from the worker")
        shot(ana, "review")
        decided: dict[str, int] = {}
        for i in range(20):
            wait(ana, lambda d: shown_key(d) is not None and shown_key(d) not in decided, timeout=30,
                 what=f"candidate {i}")
            key = shown_key(ana)
            pid = key.split("\n", 1)[1]
            text = ana.execute_script("return document.getElementById('post-text').textContent")
            assert text == POSTS[pid]                       # hostile ones too: as text
            assert ana.execute_script("return document.getElementById('post-text').children.length") == 0
            assert ana.find_element(By.ID, "why-source").text == "ibg"
            if pid in HOSTILE:
                shot(ana, "review-hostile-stack")
            label = 0 if pid.startswith(("o", "h")) or i % 7 == 3 else 1
            press(ana, str(label))
            decided[key] = label
            if i == 9:
                # a second moderator logs in meanwhile: never one of ana's leased items
                bo = chrome()
                log_in(bo, url, "bo", PASSWORD)
                wait(bo, lambda d: shown_key(d) is not None, timeout=30, what="bo's first candidate")
                leased_by_ana = asyncio.run(redis_state(loop, lambda st, r: r.zrange("synapse:console/mine:ana", 0, -1)))
                assert shown_key(bo) not in leased_by_ana and shown_key(bo) not in decided
                press(bo, "s")
        assert ana.execute_script("return window.__pwned") is None
        last = list(decided)[-1]
        wait(ana, lambda d: shown_key(d) != last, what="the next one after the 20th")
        press(ana, "u")
        wait(ana, lambda d: shown_key(d) == last, what="the undone candidate")
        press(ana, str(1 - decided[last]))
        decided[last] = 1 - decided[last]

        want = {k.split("\n", 1)[1]: y for k, y in decided.items()}

        async def ledger(st, r):
            return await st.verdicts.ledger("scam"), await st.verdicts.history("scam"), await st.seeds.all("scam")

        def settled():
            led, hist, seeds = asyncio.run(redis_state(loop, ledger))
            return (led, hist, seeds) if all(led.get(p) == y for p, y in want.items()) else None

        led, hist, seeds = until(settled, UNDO + 60, "the 20 verdicts in the worker's ledger")
        ana_verdicts = [h for h in hist if h["labeler"] == "moderator:ana"]
        assert {h["post_id"] for h in ana_verdicts} == set(want)
        assert len(ana_verdicts) == 20            # the undone one was published once, with its second answer
        confirmed = {s["id"] for s in seeds if s["origin"] == "confirmed"}
        assert confirmed == {p for p, y in want.items() if y == 1}
    finally:
        ana.quit()
        if bo is not None:
            bo.quit()


def test_an_analyst_creates_a_detector_and_its_first_candidates_arrive(stack):
    from selenium.webdriver.common.by import By

    loop, url = stack
    ian = chrome()
    try:
        log_in(ian, url, "ian", PASSWORD)
        wait(ian, lambda d: d.current_url.endswith("/detectors"), what="the detectors page")
        ian.find_element(By.ID, "new-detector").click()
        ian.find_element(By.ID, "name").send_keys("wallet")
        ian.find_element(By.ID, "description").send_keys("Posts asking people to connect their wallet to claim tokens.")
        ian.find_element(By.CSS_SELECTOR, "details summary").click()
        tau = ian.find_element(By.NAME, "tau")
        tau.send_keys("0.5")
        cands = ian.find_element(By.NAME, "candidates")
        cands.send_keys("ibg")
        ian.find_element(By.ID, "next").click()
        wait(ian, lambda d: d.find_elements(By.ID, "more"), what="the seeds step")
        ian.find_element(By.ID, "more").send_keys("connect your wallet to claim free tokens")
        ian.find_element(By.ID, "start").click()
        wait(ian, lambda d: "/detectors/wallet" in d.current_url, what="the new detector's page")
        # the workers start it live; a post for it arrives
        time.sleep(3)
        asyncio.run(send_posts(loop, {"w1": "connect your wallet now to claim free tokens today"}))
        ian.get(url + "/review?detector=wallet")
        wait(ian, lambda d: shown_key(d) == "wallet\nw1", timeout=90, what="the new detector's first candidate")
        assert "connect their wallet" in ian.find_element(By.ID, "guidelines").text
        shot(ian, "review-new-detector")
        ian.get(url + "/detectors")
        wait(ian, lambda d: len(d.find_elements(By.CSS_SELECTOR, "tr[data-detector]")) == 2, what="both detectors")
        shot(ian, "detectors")
        time.sleep(5)    # a few samples for the chart
        ian.get(url + "/detectors/scam")
        wait(ian, lambda d: d.find_element(By.ID, "precision").text != "–", timeout=30, what="scam's precision")
        shot(ian, "detector")
    finally:
        ian.quit()
