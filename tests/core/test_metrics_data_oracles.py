"""Streaming metrics, pool and seed files, the imbalanced benchmark, oracles."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest

from synapse_stream.data import Pool, load_pool, load_seed_texts, make_imbalanced
from synapse_stream.exceptions import DataError, OracleError
from synapse_stream.metrics import DetectionMetrics, Precision, QueryRatio, Recall, f1
from synapse_stream.oracles import CallbackOracle, ReplayOracle


# ---------------------------------------------------------------------- metrics
def _expected(labels, pool_size, total_pos):
    q = len(labels)
    found = sum(labels)
    p = found / q if q else 0.0
    r = found / total_pos
    return {"queried": q, "positives": found, "precision": p, "recall": r,
            "f1": (2 * p * r / (p + r)) if p + r else 0.0, "query_ratio": q / pool_size}


@pytest.mark.parametrize("seed", range(5))
def test_metrics_update_matches_plain_sums(seed):
    rnd = random.Random(seed)
    n, total = 500, 60
    labels = [int(rnd.random() < 0.2) for _ in range(120)]
    m = DetectionMetrics(pool_size=n, total_positives=total)
    for i, y in enumerate(labels, 1):
        assert m.update(y) is m
        got, want = m.get(), _expected(labels[:i], n, total)
        assert got.keys() == want.keys()
        for k in want:
            assert got[k] == pytest.approx(want[k]), (i, k)


@pytest.mark.parametrize("seed", range(5))
def test_metrics_revert_replaces_verdicts(seed):
    """Latest verdict wins: revert the old label, update with the new one."""
    rnd = random.Random(100 + seed)
    n, total = 300, 40
    current: dict[int, int] = {}
    m = DetectionMetrics(pool_size=n, total_positives=total)
    for step in range(200):
        post = rnd.randrange(80)
        y = int(rnd.random() < 0.3)
        if post in current:
            m.revert(current[post]).update(y)
        else:
            m.update(y)
        current[post] = y
        got, want = m.get(), _expected(list(current.values()), n, total)
        for k in want:
            assert got[k] == pytest.approx(want[k]), (step, k)


def test_single_metrics_and_f1():
    p, r, q = Precision(), Recall(4), QueryRatio(10)
    assert p.get() == 0.0 and r.get() == 0.0 and q.get() == 0.0
    for y in (1, 0, 0, 1, 1):
        p.update(y), r.update(y), q.update(y)
    assert p.get() == pytest.approx(3 / 5) and r.get() == pytest.approx(3 / 4) and q.get() == pytest.approx(0.5)
    p.revert(1), r.revert(1), q.revert()
    assert p.get() == pytest.approx(2 / 4) and r.get() == pytest.approx(2 / 4) and q.get() == pytest.approx(0.4)
    assert f1(0.5, 0.25) == pytest.approx(1 / 3)
    assert f1(0.0, 0.0) == 0.0


def test_metrics_without_truth_and_bad_labels():
    m = DetectionMetrics()
    m.update(1).update(0)
    g = m.get()
    assert g["precision"] == 0.5 and g["recall"] is None and g["f1"] is None and g["query_ratio"] is None
    for bad in (2, -1, 0.5, "1", None):
        with pytest.raises(ValueError):
            m.update(bad)
    assert m.get()["queried"] == 2
    with pytest.raises(ValueError):
        Recall(0)
    with pytest.raises(ValueError):
        QueryRatio(0)


# ---------------------------------------------------------------------- pools
def test_load_pool_tsv_with_quotes(tmp_path):
    path = tmp_path / "pool.tsv"
    rows = ['he said "great" film', '"quoted from the start', 'a lone " quote', 'plain text', 'tab-free, commas, ok']
    labels = [1, 0, 0, 1, 0]
    path.write_text("sentence\tlabel\n" + "".join(f"{t} \t{y}\n" for t, y in zip(rows, labels)), encoding="utf-8")
    pool = load_pool(path)
    assert pool.texts == rows  # quotes kept verbatim, trailing space stripped
    assert pool.labels.tolist() == labels and pool.labels.dtype == np.int8
    assert pool.ids == ["0", "1", "2", "3", "4"]
    assert pool.positives == 2 and len(pool) == 5
    assert pool.truth() == {"0": 1, "1": 0, "2": 0, "3": 1, "4": 0}
    assert pool.describe() == {"posts": 5, "positives": 2, "negatives": 3, "prevalence": 0.4}


def test_load_pool_tsv_with_id_column_and_bom(tmp_path):
    path = tmp_path / "pool.tsv"
    path.write_bytes("\ufeffid\tlabel\ttext\nx1\t0\thello\nx2\t1\tworld\n".encode("utf-8"))
    pool = load_pool(path)
    assert pool.ids == ["x1", "x2"] and pool.texts == ["hello", "world"] and pool.labels.tolist() == [0, 1]


def test_load_pool_jsonl(tmp_path):
    path = tmp_path / "pool.jsonl"
    objs = [{"id": "a", "text": 'say "hi"', "label": 1}, {"text": "no id here", "label": 0},
            {"id": 7, "text": "numeric id", "label": "1"}]
    path.write_text("\n".join(json.dumps(o) for o in objs) + "\n\n", encoding="utf-8")
    pool = load_pool(path)
    assert pool.ids == ["a", "1", "7"]
    assert pool.texts == ['say "hi"', "no id here", "numeric id"]
    assert pool.labels.tolist() == [1, 0, 1]


def test_load_pool_jsonl_detected_by_content(tmp_path):
    path = tmp_path / "pool.txt"
    path.write_text('{"text": "x", "label": 1}\n{"text": "y", "label": 0}\n', encoding="utf-8")
    assert load_pool(path).texts == ["x", "y"]


@pytest.mark.parametrize("name,content", [
    ("missing_label.tsv", "sentence\tscore\nfoo\t1\n"),
    ("missing_text.tsv", "body\tlabel\nfoo\t1\n"),
    ("short_row.tsv", "sentence\tlabel\nfoo\t1\nbar\n"),
    ("label_two.tsv", "sentence\tlabel\nfoo\t1\nbar\t2\n"),
    ("label_word.tsv", "sentence\tlabel\nfoo\t1\nbar\tpositive\n"),
    ("no_positives.tsv", "sentence\tlabel\nfoo\t0\nbar\t0\n"),
    ("empty.tsv", ""),
    ("header_only.tsv", "sentence\tlabel\n"),
    ("dup_ids.tsv", "id\tsentence\tlabel\na\tfoo\t1\na\tbar\t0\n"),
    ("bad_json.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": \n'),
    ("not_object.jsonl", '{"text": "a", "label": 1}\n[1, 2]\n'),
    ("no_label.jsonl", '{"text": "a", "label": 1}\n{"text": "b"}\n'),
    ("text_not_str.jsonl", '{"text": 5, "label": 1}\n'),
    ("label_json.jsonl", '{"text": "a", "label": 3}\n'),
    ("empty.jsonl", ""),
])
def test_load_pool_errors_name_the_file(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as exc:
        load_pool(path)
    assert name in str(exc.value)


def test_load_pool_non_utf8_and_missing_file(tmp_path):
    path = tmp_path / "latin1.tsv"
    path.write_bytes("sentence\tlabel\ncaf\xe9 cr\xe8me\t1\n".encode("latin-1"))
    with pytest.raises(DataError) as exc:
        load_pool(path)
    assert "latin1.tsv" in str(exc.value) and "UTF-8" in str(exc.value)
    with pytest.raises(DataError) as exc:
        load_pool(tmp_path / "absent.tsv")
    assert "absent.tsv" in str(exc.value)


# ---------------------------------------------------------------------- seeds files
def test_load_seed_texts_plain_lines(tmp_path):
    path = tmp_path / "seeds.txt"
    path.write_text('  first seed  \n\nsecond "quoted" seed\n   \nthird\tseed with a tab\n', encoding="utf-8")
    assert load_seed_texts(path) == ["first seed", 'second "quoted" seed', "third\tseed with a tab"]


def test_load_seed_texts_jsonl_skips_label_zero(tmp_path):
    path = tmp_path / "seeds.jsonl"
    path.write_text("\n".join(json.dumps(o) for o in [
        {"text": "keep me", "label": 1}, {"text": "drop me", "label": 0}, {"text": "no label, keep"},
        {"text": "   ", "label": 1}]) + "\n", encoding="utf-8")
    assert load_seed_texts(path) == ["keep me", "no label, keep"]


def test_load_seed_texts_tsv_only_label_one(tmp_path):
    path = tmp_path / "seeds.tsv"
    path.write_text("sentence\tlabel\tscore\ngood one\t1\t0.3\nbad one\t0\t0.1\nanother good\t1\t0.9\n"
                    "short row\n", encoding="utf-8")
    assert load_seed_texts(path) == ["good one", "another good"]


@pytest.mark.parametrize("name,content", [
    ("empty.txt", ""), ("blank.txt", "\n  \n\n"), ("only_negatives.tsv", "text\tlabel\nx\t0\n"),
    ("only_negatives.jsonl", '{"text": "x", "label": 0}\n'), ("bad.jsonl", '{"text": \n'),
    ("no_text.jsonl", '{"label": 1}\n'),
])
def test_load_seed_texts_errors(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as exc:
        load_seed_texts(path)
    assert name in str(exc.value)


# ---------------------------------------------------------------------- imbalance
def _pool(neg, pos, seed=0):
    y = np.array([0] * neg + [1] * pos, np.int8)
    np.random.default_rng(seed).shuffle(y)
    ids = [f"id{i}" for i in range(len(y))]
    return Pool(ids, [f"text of {i}" for i in ids], y)


def test_make_imbalanced_paper_numbers():
    # the paper's Table 1: SST-2 train has 29,780 negatives; a 10 % positive share keeps 3,308 positives
    pool = _pool(29_780, 37_569)
    out = make_imbalanced(pool, 0.10, seed=1)
    assert out.positives == 3_308 and len(out) == 33_088


@pytest.mark.parametrize("neg,pos,share,expect", [(300, 200, 0.10, 33), (90, 50, 0.25, 30), (100, 100, 0.5, 100)])
def test_make_imbalanced_keeps_negatives(neg, pos, share, expect):
    pool = _pool(neg, pos, seed=neg)
    out = make_imbalanced(pool, share, seed=3)
    assert out.positives == expect and len(out) == neg + expect
    truth = pool.truth()
    assert {i for i, y in truth.items() if y == 0} <= set(out.ids)
    assert all(truth[i] == y for i, y in zip(out.ids, out.labels.tolist()))
    assert all(t == f"text of {i}" for i, t in zip(out.ids, out.texts))
    assert out.ids == sorted(out.ids, key=lambda i: int(i[2:])), "pool order is kept"
    again = make_imbalanced(pool, share, seed=3)
    assert again.ids == out.ids


def test_make_imbalanced_too_few_positives():
    with pytest.raises(DataError):
        make_imbalanced(_pool(900, 50), 0.10)


# ---------------------------------------------------------------------- oracles
def test_replay_oracle():
    o = ReplayOracle({"a": 1, "b": 0})
    assert o.label(["b", "a", "a"]) == [0, 1, 1] and o.calls == 3
    with pytest.raises(OracleError):
        o.label(["a", "zzz"])
    assert o.calls == 3


@pytest.mark.parametrize("answer", [[2], [-1], [0.5], ["yes"], [None], [], [1, 1], ["1"]])
def test_callback_oracle_bad_labels(answer):
    o = CallbackOracle(lambda ids: answer)
    with pytest.raises(OracleError):
        o.label(["p"])
    assert o.calls == 0


def test_callback_oracle_good_labels():
    o = CallbackOracle(lambda ids: [int(i.endswith("!")) for i in ids])
    assert o.label(["a!", "b", "c!"]) == [1, 0, 1] and o.calls == 3
    o2 = CallbackOracle(lambda ids: np.array([True, False]))
    assert o2.label(["x", "y"]) == [1, 0]
