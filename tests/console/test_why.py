"""The why-suggested panel's view model: sources, seeds with similarity, the classifier, audits not marked."""
from __future__ import annotations

from stream_app.console.items import ReviewItem
from stream_app.console.why import explain, seed_ids
from synapse_stream.messages import candidate_message

SEEDS = {"s1": {"text": "double your BTC", "origin": "synthetic"}, "s2": {"text": "send ETH get 2x", "origin": "manual"}}


def item(reason: str, score: float = 0.7, matched=(), why=None) -> ReviewItem:
    doc = candidate_message("scam", "p1", "post", score, matched, reason, 0.0)
    if why is not None:
        doc["why"] = why
    return ReviewItem("scam", "p1", doc)


def test_online_ibg_reasons_show_as_ibg_with_the_seed_similarities_best_first():
    w = explain(item("post", 0.81, ["s2", "s1"], {"seeds": [["s2", 0.7], ["s1", 0.81]], "probability": 0.4,
                                                  "model_version": 2}), SEEDS)
    assert w.source == "ibg" and w.score == 0.81 and w.probability == 0.4 and w.model_version == 2
    assert [(s.text, s.similarity, s.origin) for s in w.seeds] == [("double your BTC", 0.81, "synthetic"),
                                                                  ("send ETH get 2x", 0.7, "manual")]
    assert explain(item("backfill"), SEEDS).source == "ibg"


def test_round_sources_keep_their_name_and_an_old_worker_gives_seed_ids_only():
    w = explain(item("gble", 0.33, ["s1", "gone"]), SEEDS)
    assert w.source == "gble" and w.score == 0.33 and w.probability is None
    assert [(s.text, s.similarity) for s in w.seeds] == [("double your BTC", None), ("", None)]
    assert seed_ids(item("gble", 0.33, ["s1", "gone"])) == ["s1", "gone"]
    assert explain(item("model", 0.92), SEEDS).source == "model"


def test_an_audit_item_is_never_marked_as_one():
    near = explain(item("audit", 0.0, (), {"seeds": [["s1", 0.65]], "probability": 0.2, "model_version": 1}),
                   SEEDS, tau=0.6)
    far = explain(item("audit", 0.0, (), {"seeds": [["s1", 0.2]], "probability": 0.1, "model_version": 1}),
                  SEEDS, tau=0.6)
    cold = explain(item("audit", 0.0, (), {"seeds": [["s1", 0.2]]}), SEEDS, tau=0.6)
    assert (near.source, near.score) == ("ibg", 0.65)
    assert (far.source, far.score) == ("model", 0.1)
    assert (cold.source, cold.score) == ("ibg", 0.2)
    for w in (near, far, cold):
        assert "audit" not in repr(w.to_dict())
