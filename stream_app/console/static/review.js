// The review page: one candidate on screen, the next ones already leased and loaded (no waiting between
// decisions), keys 1 / 0 / s / u / ?. Every text from a post goes in with textContent: nothing in it can run.
// Requests go out one after another (a decision before the next lease), the screen never waits for them.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const root = $("review");
  const undoSeconds = parseFloat(root.dataset.undoSeconds || "10");

  let items = [];            // leased to me, in order; items[0] is on screen
  let shownKey = null;
  const gone = new Set();    // decided or skipped here, while the server may still list them
  let lastDecision = null;   // {key, until}
  let waiting = 0;
  let chain = Promise.resolve();

  function serial(fn) {      // run requests one after another
    chain = chain.then(fn, fn).catch(() => {});
    return chain;
  }

  async function call(path, body) {
    const r = await fetch(path, {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
      body: JSON.stringify(body || {}),
    });
    if (r.status === 401 || r.redirected) { window.location = "/login"; throw new Error("logged out"); }
    let doc = {};
    try { doc = await r.json(); } catch (e) { doc = {ok: false, error: "the console did not answer (" + r.status + ")"}; }
    return doc;
  }

  function notice(text) {
    const n = $("notice");
    n.textContent = text;
    n.hidden = !text;
  }

  function detector() { return $("detector").value || null; }

  function fmt(v, digits) { return (v === null || v === undefined) ? "–" : Number(v).toFixed(digits); }

  function render(it) {
    $("item").dataset.key = it.key;
    $("item-detector").textContent = it.detector;
    const post = $("post-text");
    post.textContent = it.text || "(the worker sent no text for this post)";
    post.scrollTop = 0;
    const flags = $("flags");
    flags.textContent = it.flags && it.flags.length ? "Note: this post contains " + it.flags.join(", ") + "." : "";
    flags.hidden = !(it.flags && it.flags.length);
    $("guidelines").textContent = it.guidelines || "(no description for this detector)";
    const w = it.why || {};
    $("why-source").textContent = w.source || "–";
    $("why-score").textContent = fmt(w.score, 3);
    $("why-probability").textContent = (w.probability === null || w.probability === undefined) ? "no classifier yet"
      : fmt(w.probability, 3) + (w.model_version ? " (model v" + w.model_version + ")" : "");
    const list = $("why-seeds");
    list.replaceChildren();
    for (const s of (w.seeds || [])) {
      const li = document.createElement("li");
      const t = document.createElement("span");
      t.setAttribute("dir", "auto");
      t.textContent = s.text || "(seed not found)";
      li.appendChild(t);
      const sim = document.createElement("span");
      sim.className = "sim";
      sim.textContent = s.similarity === null || s.similarity === undefined ? "" : "similarity " + fmt(s.similarity, 3);
      li.appendChild(sim);
      list.appendChild(li);
    }
    if (!list.children.length) {
      const li = document.createElement("li");
      li.className = "muted";
      li.textContent = "none";
      list.appendChild(li);
    }
  }

  function show() {
    const it = items[0];
    const has = !!it;
    $("item").hidden = !has;
    $("empty").hidden = has;
    for (const id of ["btn-positive", "btn-negative", "btn-skip"]) $(id).disabled = !has;
    if (has && it.key !== shownKey) { render(it); }
    shownKey = has ? it.key : null;
    status();
  }

  function status() {
    const left = lastDecision ? Math.max(0, Math.ceil(lastDecision.until - Date.now() / 1000)) : 0;
    $("btn-undo").disabled = left <= 0;
    let s = waiting + " waiting";
    if (left > 0) s += " · undo possible for " + left + " s";
    $("status").textContent = s;
  }

  function refill() {
    return serial(async () => {
      const r = await call("/api/queue/lease", {detector: detector()});
      if (!r.ok) { notice(r.error || "could not load candidates"); return; }
      items = r.items.filter((i) => !gone.has(i.key));
      waiting = r.waiting || 0;
      if (shownKey && !items.some((i) => i.key === shownKey)) {
        notice("The post you were looking at went back to the queue (you left it for too long).");
      }
      show();
    });
  }

  function decide(label) {
    const it = items.shift();
    if (!it) return;
    gone.add(it.key);
    notice("");
    show();
    serial(async () => {
      const r = await call("/api/queue/decide", {key: it.key, label: label});
      if (r.ok) { lastDecision = {key: it.key, until: r.undo_until}; }
      else { notice(r.error || "the decision was not recorded"); }
      status();
    });
    refill();
  }

  function skip() {
    const it = items.shift();
    if (!it) return;
    gone.add(it.key);
    notice("");
    show();
    serial(() => call("/api/queue/skip", {key: it.key}));
    refill();
  }

  function undo() {
    if (!lastDecision) return;
    serial(async () => {
      const r = await call("/api/queue/undo", {});
      if (r.ok && r.item) {
        gone.delete(r.item.key);
        items = [r.item].concat(items.filter((i) => i.key !== r.item.key));
        lastDecision = null;
        shownKey = null;
        notice("Undone: the post is back, decide again.");
        show();
      } else {
        lastDecision = null;
        notice(r.error || "nothing to undo");
        status();
      }
    });
  }

  function help() { $("help").hidden = !$("help").hidden; }

  const actions = {"1": () => decide(1), "0": () => decide(0), "s": skip, "u": undo, "?": help};

  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const t = e.target;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable)) return;
    const key = e.key === "S" || e.key === "U" ? e.key.toLowerCase() : e.key;
    const fn = actions[key];
    if (fn) { e.preventDefault(); fn(); }
  });
  for (const b of document.querySelectorAll(".toolbar button[data-key]")) {
    b.addEventListener("click", () => { const fn = actions[b.dataset.key]; if (fn) fn(); b.blur(); });
  }
  $("detector").addEventListener("change", () => {
    const d = detector();
    history.replaceState(null, "", d ? "/review?detector=" + encodeURIComponent(d) : "/review");
    items = []; shownKey = null; show(); refill(); $("detector").blur();
  });

  setInterval(status, 1000);
  // keep the leases alive while the page is open; look for new candidates while the queue is empty
  setInterval(() => { if (!document.hidden && items.length > 0) refill(); }, 30000);
  setInterval(() => { if (!document.hidden && items.length === 0) refill(); }, 3000);
  refill();
})();
