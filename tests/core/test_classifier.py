"""The versioned detector classifier: training rows, cross-validation on the ledger, serialisation."""
from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import synapse_stream.classifier as classifier
from synapse_stream.classifier import ModelVersion, cross_validate, train_model
from synapse_stream.exceptions import ConfigError, DataError
from synapse_stream.methods import ModelGuided, new_state
from synapse_stream.oracles import ReplayOracle


def _data(seed: int = 0, d: int = 16, n_seeds: int = 6, n_pos: int = 30, n_neg: int = 50, n_prov: int = 6,
          sep: float = 0.8):
    rng = np.random.default_rng(seed)
    centre = rng.normal(size=d)
    centre /= np.linalg.norm(centre)
    seeds = (sep * centre + rng.normal(size=(n_seeds, d)) / np.sqrt(d)).astype(np.float32)
    X_lab = np.vstack([sep * centre + rng.normal(size=(n_pos, d)) / np.sqrt(d),
                       -0.2 * centre + rng.normal(size=(n_neg, d)) / np.sqrt(d)]).astype(np.float32)
    y_lab = np.array([1] * n_pos + [0] * n_neg, dtype=np.int8)
    perm = rng.permutation(len(y_lab))
    X_prov = (rng.normal(size=(n_prov, d)) / np.sqrt(d)).astype(np.float32)
    return seeds, X_lab[perm], y_lab[perm], X_prov


def test_matches_a_direct_logistic_regression_fit():
    seeds, X_lab, y_lab, X_prov = _data(1)
    mv = train_model("det", 3, seeds, X_lab, y_lab, X_prov, C=0.7, seed_weight=2.5, folds=0, now=123.0)
    X = np.vstack([seeds, X_lab, X_prov])
    y = np.concatenate([np.ones(len(seeds)), y_lab, np.zeros(len(X_prov))])
    w = np.concatenate([np.full(len(seeds), 2.5), np.ones(len(X_lab) + len(X_prov))])
    ref = LogisticRegression(C=0.7, max_iter=500).fit(X, y, sample_weight=w)
    np.testing.assert_allclose(mv.coef, ref.coef_[0].astype(np.float32), rtol=1e-6, atol=1e-7)
    assert mv.coef.dtype == np.float32 and mv.coef.shape == (X.shape[1],)
    assert mv.intercept == pytest.approx(float(ref.intercept_[0]), abs=1e-9)
    Q = np.random.default_rng(9).normal(size=(40, X.shape[1])).astype(np.float32)
    p = mv.predict_proba(Q)
    assert p.dtype == np.float32 and p.shape == (40,)
    np.testing.assert_array_equal(p, ref.predict_proba(Q)[:, 1].astype(np.float32))   # in-process: bit for bit
    assert (mv.detector, mv.version, mv.trained_at) == ("det", 3, 123.0)
    assert (mv.n_seeds, mv.n_positives, mv.n_negatives, mv.n_provisional) == (6, 30, 50, 6)
    assert (mv.cv_precision, mv.cv_recall, mv.cv_folds) == (None, None, 0)


def test_many_rows_are_scored_in_chunks_as_in_one_call(monkeypatch):
    """A window's worth of rows is scored a chunk at a time (no window-sized temporaries): the probabilities of one
    call over all the rows, in-process (sklearn) and from the wire form (coef) alike."""
    seeds, X_lab, y_lab, X_prov = _data(2)
    mv = train_model("det", 1, seeds, X_lab, y_lab, X_prov, folds=0)
    wire = ModelVersion.from_dict(mv.to_dict())
    Q = np.random.default_rng(3).normal(size=(1000, X_lab.shape[1])).astype(np.float32)
    whole = [m.predict_proba(Q) for m in (mv, wire)]
    monkeypatch.setattr(classifier, "_CHUNK", 64)
    for m, ref in zip((mv, wire), whole):
        got = m.predict_proba(Q)
        assert got.shape == (1000,) and got.dtype == np.float32
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-9)   # a BLAS kernel per shape: equal to rounding


def test_none_with_one_class():
    seeds, X_lab, y_lab, X_prov = _data(2)
    pos = X_lab[y_lab == 1]
    assert train_model("det", 1, seeds, pos, np.ones(len(pos)), X_prov[:0]) is None           # positives only
    assert train_model("det", 1, seeds[:0], X_lab[y_lab == 0], np.zeros(int((y_lab == 0).sum())), X_prov) is None
    assert train_model("det", 1, seeds[:0], X_lab[:0], y_lab[:0], X_prov[:0]) is None         # nothing at all
    mv = train_model("det", 1, seeds, X_lab[:0], y_lab[:0], X_prov)        # seeds-only model: seeds + provisional
    assert mv is not None and (mv.n_positives, mv.n_negatives, mv.cv_folds) == (0, 0, 0)


def test_cv_tests_only_labelled_posts_and_keeps_seeds_and_provisional_in_every_fold(monkeypatch):
    seeds, X_lab, y_lab, X_prov = _data(3, n_pos=12, n_neg=20)
    fits, scored = [], []
    real_fit = classifier._fit

    class Spy:
        def __init__(self, est):
            self.est = est

        def predict_proba(self, X):
            scored.append(np.asarray(X).copy())
            return self.est.predict_proba(X)

    def spy_fit(X, y, w, C):
        fits.append((X.copy(), y.copy(), w.copy()))
        return Spy(real_fit(X, y, w, C))

    monkeypatch.setattr(classifier, "_fit", spy_fit)
    prec, rec, k, oof = cross_validate(seeds, X_lab, y_lab, X_prov, folds=5, seed_weight=3.0)
    assert k == 5 and len(fits) == 5 and len(scored) == 5

    def rows(A):
        return {A[i].tobytes() for i in range(len(A))}

    seed_rows, prov_rows, lab_rows = rows(seeds), rows(X_prov), rows(X_lab)
    tested = []
    for (X, y, w), T in zip(fits, scored):
        m = len(seeds)
        # seeds first (label 1, seed weight), provisional negatives last (label 0), in every training fold
        np.testing.assert_array_equal(X[:m], seeds)
        assert (y[:m] == 1).all() and (w[:m] == 3.0).all()
        np.testing.assert_array_equal(X[-len(X_prov):], X_prov)
        assert (y[-len(X_prov):] == 0).all()
        # a test fold: labelled posts only, none of them in its own training fold
        assert rows(T) <= lab_rows and not rows(T) & (seed_rows | prov_rows)
        assert not rows(T) & rows(X[m:-len(X_prov)])
        tested.append(T)
    assert sum(len(T) for T in tested) == len(X_lab) and rows(np.vstack(tested)) == lab_rows   # each post once
    # the pooled figures are the out-of-fold predictions at the threshold
    pred = oof >= 0.5
    tp = int((pred & (y_lab == 1)).sum())
    assert prec == pytest.approx(tp / pred.sum()) and rec == pytest.approx(tp / (y_lab == 1).sum())


def test_cv_folds_cut_to_the_minority_class_and_off_below_two():
    seeds, X_lab, y_lab, X_prov = _data(4, n_pos=3, n_neg=40)
    mv = train_model("det", 1, seeds, X_lab, y_lab, X_prov, folds=5)
    assert mv.cv_folds == 3 and mv.cv_precision is not None and 0 <= mv.cv_recall <= 1
    seeds, X_lab, y_lab, X_prov = _data(4, n_pos=1, n_neg=40)
    mv = train_model("det", 1, seeds, X_lab, y_lab, X_prov, folds=5)
    assert (mv.cv_folds, mv.cv_precision, mv.cv_recall) == (0, None, None)
    seeds, X_lab, y_lab, X_prov = _data(5)
    mv = train_model("det", 1, seeds, X_lab, y_lab, X_prov, folds=0)        # folds=0: CV off
    assert (mv.cv_folds, mv.cv_precision, mv.cv_recall) == (0, None, None)
    mv = train_model("det", 1, seeds, X_lab, y_lab, X_prov, folds=5, cv_threshold=0.5)
    assert mv.cv_folds == 5 and mv.cv_precision > 0.8 and mv.cv_recall > 0.8    # separable data
    strict = train_model("det", 1, seeds, X_lab, y_lab, X_prov, folds=5, cv_threshold=0.99)
    assert strict.cv_recall <= mv.cv_recall and strict.cv_threshold == 0.99


def test_round_trip_to_dict_from_dict():
    seeds, X_lab, y_lab, X_prov = _data(6)
    mv = train_model("crypto-scam", 7, seeds, X_lab, y_lab, X_prov, folds=4, now=1763700000.5)
    d = json.loads(json.dumps(mv.to_dict()))          # JSON-safe
    assert base64.b64decode(d["coef"]) == mv.coef.astype("<f4").tobytes()
    again = ModelVersion.from_dict(d)
    assert again == mv and again != ModelVersion.from_dict({**d, "version": 8})   # every public field
    np.testing.assert_array_equal(again.coef, mv.coef)
    assert again.coef.dtype == np.float32 and again.coef.flags.writeable
    assert again.to_dict() == d
    Q = np.random.default_rng(1).normal(size=(50, 16)).astype(np.float32)
    np.testing.assert_allclose(again.predict_proba(Q), mv.predict_proba(Q), atol=2e-6)
    none_cv = train_model("x", 0, seeds, X_lab[:0], y_lab[:0], X_prov)
    assert ModelVersion.from_dict(none_cv.to_dict()).cv_precision is None


@pytest.mark.parametrize("mutate", [
    lambda d: "not a dict",
    lambda d: {**d, "format": 2},
    lambda d: {k: v for k, v in d.items() if k != "coef"},
    lambda d: {k: v for k, v in d.items() if k != "cv_recall"},
    lambda d: {**d, "detector": ""},
    lambda d: {**d, "detector": 3},
    lambda d: {**d, "version": -1},
    lambda d: {**d, "version": "1"},
    lambda d: {**d, "version": True},
    lambda d: {**d, "coef": "%%% not base64"},
    lambda d: {**d, "coef": base64.b64encode(b"abc").decode()},                     # not a multiple of 4 bytes
    lambda d: {**d, "coef": ""},
    lambda d: {**d, "coef": [0.1, 0.2]},
    lambda d: {**d, "coef": base64.b64encode(np.array([np.nan, 1], "<f4").tobytes()).decode(), "dim": 2},
    lambda d: {**d, "dim": 3},
    lambda d: {**d, "intercept": float("inf")},
    lambda d: {**d, "intercept": "0.1"},
    lambda d: {**d, "n_seeds": -2},
    lambda d: {**d, "n_positives": 1.5},
    lambda d: {**d, "cv_precision": 1.2},
    lambda d: {**d, "cv_folds": 0},                 # figures without folds
    lambda d: {**d, "cv_folds": 1},
    lambda d: {**d, "cv_recall": None},             # folds without one of the figures
    lambda d: {**d, "cv_threshold": None},
    lambda d: {**d, "trained_at": None},
])
def test_bad_dict_raises_data_error(mutate):
    seeds, X_lab, y_lab, X_prov = _data(7)
    d = train_model("det", 1, seeds, X_lab, y_lab, X_prov, folds=3).to_dict()
    with pytest.raises(DataError):
        ModelVersion.from_dict(mutate(d))


def test_bad_training_input():
    seeds, X_lab, y_lab, X_prov = _data(8)
    with pytest.raises(DataError):
        train_model("det", 1, seeds, X_lab, y_lab[:-1], X_prov)            # labels and rows disagree
    with pytest.raises(DataError):
        train_model("det", 1, seeds, X_lab[:, :8], y_lab, X_prov)          # dimensions disagree
    with pytest.raises(DataError):
        train_model("det", 1, seeds, X_lab, np.full(len(y_lab), 2), X_prov)
    for bad in (dict(C=0), dict(seed_weight=-1), dict(folds=-1), dict(cv_threshold=1.5)):
        with pytest.raises(ConfigError):
            train_model("det", 1, seeds, X_lab, y_lab, X_prov, **bad)
    mv = train_model("det", 1, seeds, X_lab, y_lab, X_prov)
    with pytest.raises(DataError):
        mv.predict_proba(np.zeros((2, 5), np.float32))
    assert mv.predict_proba(np.zeros((0, 16), np.float32)).shape == (0,)
    assert mv.predict_proba(X_lab[0]).shape == (1,)


def test_model_guided_scores_are_train_model(make_detection_data):
    """ModelGuided fits through train_model (no CV) and keeps the fitted version."""
    D = make_detection_data(0, n_pos_clusters=2, n_neg_clusters=8, per_cluster=40)
    m = ModelGuided(k0=10, max_query_ratio=0.2, seed=1)
    res = m.run(D.X, D.S, D.ids, ReplayOracle(D.truth))
    assert m.last_model is not None and m.last_model.cv_folds == 0 and m.last_model.detector == "model"
    # one more round by hand: the scores are a direct LogisticRegression fit on training_set's rows
    state = new_state(D.X, D.S, D.ids, seed=1)
    m.prepare(state)
    state.labels[res.order] = res.labels
    s = m.scores(state)
    X, y, w = m.training_set(state)
    ref = LogisticRegression(C=1.0, max_iter=500).fit(X, y, sample_weight=w)
    unl = np.flatnonzero(state.labels < 0)
    np.testing.assert_array_equal(s[unl], ref.predict_proba(state.X[unl])[:, 1].astype(np.float32))
    assert (s[state.labels >= 0] == 0).all()
    assert m.last_model.n_positives + m.last_model.n_negatives == len(res.order)
