"""The console as a person uses it, in Debian's headless Chromium: the console on a real Redis (the review queue),
fed candidates directly (no broker; ``test_browser_stack.py`` runs the same loop on the embedded stack with a
worker), its decisions published to a memory sink.

A moderator logs in and labels 20 candidates with the keyboard without waiting, undoes one; a second moderator
never sees the first one's leased items; hostile posts render as text and never hide the buttons; an analyst
creates a detector from the page. ``SYNAPSE_SCREENSHOTS=1`` saves each page to docs/console/.
"""
from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest

from browser_helpers import Served, chrome, log_in, needs_browser, press, shot, shown_key, wait
from console_helpers import DETECTORS, PASSWORD, fast_users
from fake_llm import FakeLLM
from stream_app.console.items import ReviewItem
from stream_app.console.publisher import MemorySink, Publisher
from stream_app.console.seeding import SeedSuggester
from stream_app.console.stats import MemoryRecords
from stream_app.console.web import Parts
from synapse_stream.messages import candidate_message

pytestmark = [pytest.mark.browser, needs_browser]

UNDO = 1.5

# what the fake LLM writes: two honest examples and three that try to become markup on the seeds page (a script,
# an <img onerror> that first closes the <textarea>, a quote that closes the hidden input's value attribute)
LLM_SEEDS = ["Double your BTC today: send 0.1 and get 0.2 back within the hour",
             "<script>window.__pwned = 1</script>Send ETH to this wallet and receive twice as much",
             '</textarea><img src="x" onerror="window.__pwned = 2">Giveaway: every coin you send comes back doubled',
             '"><b id="broke-out">Our founder doubles all crypto sent to this address</b>',
             "Last chance: 500 USDT in, 1000 USDT out, guaranteed by our trading bot"]


def llm_answer(texts: list[str]) -> dict:
    """An OpenAI chat-completions answer whose content is ``{"examples": texts}`` (what generate_seeds asks for)."""
    return {"id": "x", "object": "chat.completion", "model": "fake-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": json.dumps({"examples": texts})},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30}}


class Console:
    """The app over a Redis queue, a memory catalog/state/records, and a publisher into ``sink``."""

    def __init__(self, redis_url: str, tmp_path, llm_url: str | None = None) -> None:
        import redis.asyncio as aioredis

        from stream_app.console.app import create_app
        from stream_app.console.catalog import MemoryCatalog
        from stream_app.console.queue_redis import RedisReviewQueue
        from stream_app.console.settings import ConsoleSettings
        from stream_app.worker.state import MemoryState

        llm = {} if llm_url is None else {"llm_base_url": llm_url, "llm_model": "fake-model", "llm_api_key": "sk-test",
                                          "embedder": "hashing-128"}
        self.settings = ConsoleSettings(_env_file=None, console_secret="browser-test",
                                        console_users_file=str(tmp_path / "users.json"),
                                        console_undo_seconds=UNDO, console_prefetch=3, redis_url=redis_url, **llm)
        users = fast_users(self.settings.users_path())
        for name, role in (("ana", "moderator"), ("bo", "moderator"), ("ian", "analyst")):
            users.add(name, PASSWORD, role)
        self.prefix = f"b-{uuid.uuid4().hex[:8]}:"
        self.redis_url = redis_url
        self.sink = MemorySink()
        holder = {}

        async def publish_loop():
            # the queue's Redis client lives on the server's event loop
            holder["client"] = aioredis.from_url(redis_url, decode_responses=True)
            self.parts.queue = RedisReviewQueue(holder["client"], self.prefix, 120.0, UNDO)
            holder["ready"] = True
            await Publisher(self.parts.queue, self.sink).run(interval=0.2)

        async def close():
            if "client" in holder:
                await holder["client"].aclose()

        self.parts = Parts(queue=None, catalog=MemoryCatalog(DETECTORS), users=users, state=MemoryState(),
                           records=MemoryRecords(), services=[publish_loop], closers=[close],
                           suggester=SeedSuggester(self.settings, n=len(LLM_SEEDS), k=20, timeout=10)
                           if self.settings.llm_seeds() else None)
        self.holder = holder
        self.app = create_app(self.settings, self.parts)

    def add(self, texts: list[str], det: str = "scam", reason: str = "ibg", start: int = 0) -> list[str]:
        """Candidates straight into the Redis queue (what the candidates follower does)."""
        import redis.asyncio as aioredis

        from stream_app.console.queue_redis import RedisReviewQueue

        async def go():
            r = aioredis.from_url(self.redis_url, decode_responses=True)
            try:
                q = RedisReviewQueue(r, self.prefix)
                items = [ReviewItem(det, f"p{start + i}", {
                    **candidate_message(det, f"p{start + i}", t, 0.71, [], reason, time.time()),
                    "why": {"seeds": [], "probability": 0.66, "model_version": 2}}) for i, t in enumerate(texts)]
                await q.add(items, time.time())
                return [it.key for it in items]
            finally:
                await r.aclose()
        return asyncio.run(go())


def _serve(c: Console):
    with Served(c.app) as served:
        c.url = served.url
        deadline = time.monotonic() + 10
        while not c.holder.get("ready") and time.monotonic() < deadline:
            time.sleep(0.02)
        yield c


@pytest.fixture
def console(redis_url, tmp_path):
    yield from _serve(Console(redis_url, tmp_path))


@pytest.fixture
def fake_llm():
    f = FakeLLM()
    yield f
    f.stop()


@pytest.fixture
def llm_console(redis_url, tmp_path, fake_llm):
    """The console with LLM seeds from the fake OpenAI-compatible endpoint (its answers: ``LLM_SEEDS``)."""
    fake_llm.default = (200, llm_answer(LLM_SEEDS))
    yield from _serve(Console(redis_url, tmp_path, llm_url=fake_llm.base_url))


@pytest.fixture
def browser():
    d = chrome()
    yield d
    d.quit()


def test_a_moderator_labels_20_with_the_keyboard_and_undoes_one(console, browser):
    from selenium.webdriver.common.by import By

    keys = console.add([f"Candidate number {i}: send 0.1 BTC, get 1 BTC back" for i in range(24)])
    log_in(browser, console.url, "ana", PASSWORD)
    shot(browser, "review")
    wait(browser, lambda d: shown_key(d) == keys[0], what="the first candidate")
    assert "Posts promising to double crypto" in browser.find_element(By.ID, "guidelines").text
    assert browser.find_element(By.ID, "why-source").text == "ibg"
    assert browser.find_element(By.ID, "why-probability").text.startswith("0.660")
    press(browser, "?")
    wait(browser, lambda d: d.find_element(By.ID, "help").is_displayed(), what="the help")
    shot(browser, "review-help")
    press(browser, "?")

    decided, gaps = [], []
    for i in range(20):
        wait(browser, lambda d: shown_key(d) == keys[i], what=f"candidate {i}")
        t0 = time.perf_counter()
        press(browser, "1" if i % 2 == 0 else "0")
        decided.append((keys[i], 1 if i % 2 == 0 else 0))
        if i < 19:
            wait(browser, lambda d: shown_key(d) == keys[i + 1], what=f"candidate {i + 1} after the key")
            gaps.append(time.perf_counter() - t0)
    # the next item is on screen at once (prefetched): far below the 3 s a decision may take at 20 a minute
    print(f"key to next post: median {sorted(gaps)[len(gaps) // 2] * 1000:.0f} ms, max {max(gaps) * 1000:.0f} ms")
    assert max(gaps) < 1.0, gaps
    wait(browser, lambda d: shown_key(d) == keys[20], what="candidate 20")
    press(browser, "u")
    wait(browser, lambda d: shown_key(d) == keys[19], what="the undone candidate back on screen")
    assert "Undone" in browser.find_element(By.ID, "notice").text
    press(browser, "1")                       # it was 0: now 1
    decided[-1] = (keys[19], 1)
    wait(browser, lambda d: shown_key(d) == keys[20], what="candidate 20 again")
    wait(browser, lambda d: len(console.sink.messages) >= 20, timeout=UNDO + 10, what="20 labels published")
    time.sleep(UNDO + 0.5)
    got = {(m["detector"] + "\n" + m["post_id"], m["label"]) for m in console.sink.messages}
    assert got == set(decided) and len(console.sink.messages) == 20
    assert {m["labeler"] for m in console.sink.messages} == {"moderator:ana"}


def test_a_second_moderator_never_sees_the_first_ones_leased_items(console, browser):
    keys = console.add([f"post {i}" for i in range(8)])
    other = chrome()
    try:
        log_in(browser, console.url, "ana", PASSWORD)
        log_in(other, console.url, "bo", PASSWORD)
        seen = {"ana": set(), "bo": set()}
        for _ in range(4):
            for name, d in (("ana", browser), ("bo", other)):
                wait(d, lambda d: shown_key(d) is not None and shown_key(d) not in seen[name], what=f"{name}'s next")
                seen[name].add(shown_key(d))
                press(d, "s" if len(seen[name]) == 2 else "1")
        assert not seen["ana"] & seen["bo"], seen
        assert seen["ana"] | seen["bo"] <= set(keys)
    finally:
        other.quit()


HOSTILE = ["<script>window.__pwned = 1</script>Free crypto",
           '<img src="x" onerror="window.__pwned = 2"><b>bold?</b>',
           "\u202eThis text is reversed by an RTL override \u202d and this is not",
           "WALL" + "A" * 19_990 + "\n" * 10]


def test_hostile_posts_render_as_text_and_never_hide_the_buttons(console, browser):
    from selenium.webdriver.common.by import By

    keys = console.add(HOSTILE)
    browser.set_window_size(1000, 700)
    log_in(browser, console.url, "ana", PASSWORD)
    for i, text in enumerate(HOSTILE):
        wait(browser, lambda d: shown_key(d) == keys[i], what=f"hostile post {i}")
        post = browser.find_element(By.ID, "post-text")
        assert browser.execute_script("return arguments[0].textContent", post) == text
        assert browser.execute_script("return arguments[0].children.length", post) == 0
        assert browser.execute_script("return window.__pwned") is None
        for b in ("btn-positive", "btn-negative", "btn-skip"):
            el = browser.find_element(By.ID, b)
            r = browser.execute_script("const r = arguments[0].getBoundingClientRect();"
                                       "return [r.top, r.bottom, r.left, r.right, innerHeight, innerWidth,"
                                       " document.elementFromPoint((r.left + r.right) / 2, (r.top + r.bottom) / 2)"
                                       " === arguments[0] || arguments[0].contains(document.elementFromPoint("
                                       "(r.left + r.right) / 2, (r.top + r.bottom) / 2))]", el)
            top, bottom, left, right, vh, vw, on_top = r
            assert 0 <= top and bottom <= vh and 0 <= left and right <= vw and on_top, (b, r)
        width = browser.execute_script("return document.documentElement.scrollWidth")
        assert width <= 1000, f"post {i} widens the page to {width}px"
        if i in (2, 3):
            shot(browser, f"review-hostile-{i}")
            assert "Note: this post contains" in browser.find_element(By.ID, "flags").text
        press(browser, "0")
    assert browser.execute_script("return window.__pwned") is None


def test_an_analyst_creates_a_detector_from_the_page(console, browser):
    from selenium.webdriver.common.by import By

    log_in(browser, console.url, "ian", PASSWORD)
    wait(browser, lambda d: d.current_url.endswith("/detectors"), what="the detectors page")
    shot(browser, "detectors")
    browser.find_element(By.ID, "new-detector").click()
    browser.find_element(By.ID, "name").send_keys("wallet-drain")
    browser.find_element(By.ID, "description").send_keys("Posts asking people to connect their wallet to a fake airdrop.")
    shot(browser, "new-detector")
    browser.find_element(By.ID, "next").click()
    wait(browser, lambda d: d.find_elements(By.ID, "more"), what="the seeds step")
    browser.find_element(By.ID, "more").send_keys("Claim your airdrop now: connect your wallet at this link\n"
                                                  "Free tokens for the first 1000 wallets, connect here")
    shot(browser, "new-detector-seeds")
    browser.find_element(By.ID, "start").click()
    wait(browser, lambda d: "/detectors/wallet-drain" in d.current_url, what="the new detector's page")
    assert "Detector started" in browser.find_element(By.ID, "message").text
    assert [s["origin"] for s in console.parts.catalog.seeds] == ["manual", "manual"]
    assert "wallet-drain" in console.parts.catalog.detectors
    # its first candidates reach the review page
    console.add(["Connect your wallet to claim 500 free tokens"], det="wallet-drain", start=100)
    browser.get(console.url + "/detectors/wallet-drain")
    wait(browser, lambda d: d.find_element(By.ID, "waiting").text == "1", what="the candidate counted")
    shot(browser, "detector")
    browser.get(console.url + "/review?detector=wallet-drain")
    wait(browser, lambda d: shown_key(d) == "wallet-drain\np100", what="its first candidate")


def test_an_analyst_creates_a_detector_from_llm_seeds_edited_and_removed(llm_console, fake_llm, browser):
    """The LLM path clicked through: a description, the fake endpoint's suggestions on the page (hostile ones as
    text in their boxes), one edited, one removed, start; the detector exists with exactly the seeds kept."""
    from selenium.webdriver.common.by import By

    log_in(browser, llm_console.url, "ian", PASSWORD)
    browser.get(llm_console.url + "/detectors/new")
    browser.find_element(By.ID, "name").send_keys("doubler")
    description = "Posts promising to double any crypto sent to a wallet."
    browser.find_element(By.ID, "description").send_keys(description)
    assert browser.find_element(By.ID, "use-llm").is_selected()
    browser.find_element(By.ID, "next").click()
    wait(browser, lambda d: d.find_elements(By.ID, "suggestions"), timeout=30, what="the LLM's suggestions")
    # the endpoint was asked with the description, as data in the user message
    assert fake_llm.requests and all(r["path"] == "/v1/chat/completions" for r in fake_llm.requests)
    assert description in fake_llm.requests[0]["body"]["messages"][-1]["content"]
    boxes = browser.find_elements(By.CSS_SELECTOR, "#suggestions textarea[name=seed]")
    assert [b.get_property("value") for b in boxes] == LLM_SEEDS
    originals = browser.find_elements(By.CSS_SELECTOR, "#suggestions input[name=seed_llm]")
    assert [o.get_property("value") for o in originals] == LLM_SEEDS
    # nothing the LLM wrote became an element: one list item per seed holding its box, the hidden copy, the tick
    assert browser.execute_script("return document.querySelectorAll('#suggestions img, #suggestions script, "
                                  "#suggestions b, #broke-out').length") == 0
    assert browser.execute_script("return document.querySelectorAll('#suggestions > li').length") == len(LLM_SEEDS)
    assert browser.execute_script("return window.__pwned") is None
    shot(browser, "new-detector-llm-seeds")

    edited = "Send me 1 BTC and I will send 2 BTC back, promise"
    box = browser.find_element(By.ID, "seed-0")
    box.clear()
    box.send_keys(edited)
    browser.find_element(By.ID, "drop-1").click()        # the <script> one goes
    assert browser.find_element(By.ID, "drop-1").is_selected()
    browser.find_element(By.ID, "more").send_keys("A typed seed: doubling giveaway, today only")
    browser.find_element(By.ID, "start").click()
    wait(browser, lambda d: "/detectors/doubler" in d.current_url, what="the new detector's page")
    assert "Detector started" in browser.find_element(By.ID, "message").text
    assert browser.execute_script("return window.__pwned") is None

    det = llm_console.parts.catalog.detectors["doubler"]
    assert det["description"] == description
    assert [(s["detector"], s["text"], s["origin"]) for s in llm_console.parts.catalog.seeds] == [
        ("doubler", edited, "manual"),
        *[("doubler", t, "synthetic") for t in LLM_SEEDS[2:]],
        ("doubler", "A typed seed: doubling giveaway, today only", "manual")]
