"""The batched near-duplicate signatures are the per-text ones bit for bit, and the stage's faster paths raise
the same proposals as the reference ones (the per-text signature, a novelty search for every probe)."""
from __future__ import annotations

import zlib

import numpy as np

from synapse_stream.segments import Retention, SegmentedIndex
from synapse_stream.trends import TrendParams, TrendStage
from synapse_stream.trends.dupes import NearDupIndex, normalise

DIM = 32


def reference_signature(d: NearDupIndex, norm: str) -> np.ndarray:
    """The signature as it was computed before batching: one text, a set of its shingles, zlib's crc32 each."""
    sh = {norm[i:i + d.shingle] for i in range(max(1, len(norm) - d.shingle + 1))}
    x = [zlib.crc32(s.encode("utf-8")) for s in sh]
    a, b = [int(v) for v in d.a], [int(v) for v in d.b]
    # multiply-add-shift in Python's integers: (a * x + b) mod 2**64, its high 32 bits
    return np.array([min(((ai * xi + bi) % 2**64) >> 32 for xi in x) for ai, bi in zip(a, b)], np.uint32)


class ReferenceDupes(NearDupIndex):
    """A :class:`NearDupIndex` signing each text on its own with :func:`reference_signature`."""

    def signatures(self, norms):
        if not norms:
            return np.zeros((0, len(self.a)), np.uint32)
        return np.stack([reference_signature(self, n) for n in norms])


def random_texts(rng, n):
    alphabets = ["abcdefghij klmnop", "ABCxyz 0123 !?@#", "éèàüöß ñç", "日本語のテキスト", "😀🔥✨ 👍", "ab\u0301c \t\n",
                 "Ωμέγα Ελλάδα", "\x00\x7f~"]
    out = ["", "a", "abcd", "abcde", "abcdef", " ", "ééééé", "😀", "😀😀😀😀😀😀"]
    while len(out) < n:
        chars = "".join(alphabets[j] for j in rng.choice(len(alphabets), rng.integers(1, 4), replace=False))
        length = int(rng.choice([1, 3, 4, 5, 6, 12, 40, 200]))
        out.append("".join(rng.choice(list(chars), length)))
    return out


def test_batched_signatures_equal_the_per_text_reference():
    rng = np.random.default_rng(0)
    texts = random_texts(rng, 400)
    for d in (NearDupIndex(), NearDupIndex(perms=64, bands=8, shingle=3, seed=7)):
        for norms in (texts, [normalise(t) for t in texts]):
            ref = np.stack([reference_signature(d, n) for n in norms])
            batched = d.signatures(norms)
            assert batched.dtype == np.uint32 and batched.shape == ref.shape
            assert np.array_equal(batched, ref)
            assert all(np.array_equal(d.signature(n), r) for n, r in zip(norms[:50], ref[:50]))
            order = rng.permutation(len(norms))             # rows follow the texts, whatever their mix
            assert np.array_equal(d.signatures([norms[i] for i in order]), ref[order])
    assert NearDupIndex().signatures([]).shape == (0, 128)


def flood_batches(seed=0, n_batches=300, batch=20):
    """A post every 36 s: random-word background (ASCII and not; half of it on six topics), three near-duplicate
    floods from batch 100 (after the warm-up)."""
    rng = np.random.default_rng(seed)
    words = ["alpha", "beta", "gamma", "delta", "épsilon", "zêta", "日本", "kappa", "lambda", "mu", "nu", "xi"]
    floods = ["Claim your FREE prize now at http://x.co/{i} before it expires @user{i}",
              "Votre colis est bloqué, payez les frais ici {i} — merci 📦",
              "urgent: wallet recovery needed, send the seed phrase to support desk {i}"]
    centres = np.linalg.qr(rng.normal(size=(DIM, DIM)))[0][:10]   # 0-3 the floods', 4-9 background topics
    out, n = [], 0
    for b in range(n_batches):
        ids, texts, vecs, ts = [], [], [], []
        for _ in range(batch):
            n += 1
            k = int(rng.integers(len(floods))) if b >= 100 and rng.random() < 0.3 else -1
            ids.append(f"{'F' if k >= 0 else 'b'}{n}")
            texts.append(floods[k].format(i=n) if k >= 0 else " ".join(rng.choice(words, int(rng.integers(1, 9)))))
            c = centres[k + 1] if k >= 0 else centres[rng.integers(4, 10)] if rng.random() < 0.5 else rng.normal(size=DIM)
            v = c + 0.15 * rng.normal(size=DIM)
            vecs.append(v / np.linalg.norm(v))
            ts.append(36.0 * n)
        out.append((ids, texts, np.stack(vecs).astype(np.float32), ts))
    return out


class ReferenceStage(TrendStage):
    """The stage with the reference paths: per-text signatures and a novelty search for every probe."""

    def __init__(self, index, dim, params):
        super().__init__(index, dim, params)
        self.dupes = ReferenceDupes(horizon=params.horizon)

    def _probe(self, touched) -> None:
        warm = self.now - self.start >= self.p.warmup
        todo = self._probes(touched)
        if not todo:
            return
        prior = self.novelty.prior_similarity(np.stack([v for _, v, _ in todo]).astype(np.float32),
                                              [ex for _, _, ex in todo])
        for (g, _, _), s in zip(todo, prior):
            g.probed += 1
            g.novel += int(warm and self.novelty.is_novel(s))


def run(make, data, params):
    index = SegmentedIndex(DIM, Retention(seconds=86400.0))
    stage = make(index, DIM, params)
    raised = []
    for ids, texts, vecs, ts in data:
        index.add(ids, vecs, None, ts=ts)
        index.drop(index.expirable().segments)
        raised += [(p.id, new, p.version, p.size, p.p_value, [m["id"] for m in p.medoids], p.terms)
                   for p, new in stage.observe(ids, texts, vecs, ts)]
    groups = {k: (g.size, g.probed, g.novel, g.first_id, [m[0] for m in g.members])
              for k, g in {**stage.groups, **stage._dup_groups}.items()}
    return raised, groups, list(stage.dupes._buckets.items())


def test_the_stage_raises_the_same_proposals_as_with_the_reference_paths():
    data = flood_batches()
    params = TrendParams(warmup=2 * 3600.0, radius=0.7, horizon=20 * 3600.0)
    fast, ref = run(TrendStage, data, params), run(ReferenceStage, data, params)
    assert fast[0], "the floods raised nothing: the comparison would be empty"
    assert any(m.startswith("F") for p in fast[0] for m in p[5])             # the floods' own posts
    assert any(g[2] for g in fast[1].values()) and any(k.startswith("d:") for k in fast[1])   # probed, novel
    assert fast == ref
