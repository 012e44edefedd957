"""The ``synapse-stream eval`` command end to end (hashing embedder), its errors, and one real-model run."""
from __future__ import annotations

import json
import math
import random

import pytest

from stream_app.cli import METHODS, main

RATIOS = {"0.01", "0.024", "0.05", "0.1"}
PNG = b"\x89PNG\r\n\x1a\n"

TOPICS = {
    "pos": "crypto giveaway airdrop token wallet free claim bonus coin".split(),
    "weather": "rain sunny cloud wind storm forecast cold warm snow".split(),
    "sports": "match goal team score league player coach season win".split(),
    "food": "recipe bake oven flour sugar dinner soup spicy sauce".split(),
    "city": "train bus traffic street bridge metro tram station road".split(),
}
FILLER = "the a and of to in is it this that with for on".split()


def _text(rnd, topic):
    words = rnd.sample(TOPICS[topic], rnd.randint(4, 6)) + rnd.sample(FILLER, 2)
    rnd.shuffle(words)
    return " ".join(words)


@pytest.fixture
def small_eval(tmp_path):
    """A 300-post pool (30 positives, some with a double quote) and a 5-line seeds file."""
    rnd = random.Random(0)
    rows = [(_text(rnd, "pos"), 1) for _ in range(30)]
    rows += [(_text(rnd, rnd.choice(["weather", "sports", "food", "city"])), 0) for _ in range(270)]
    rows[3] = ('he said "free" crypto ' + rows[3][0], 1)
    rnd.shuffle(rows)
    pool = tmp_path / "pool.tsv"
    pool.write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows), encoding="utf-8")
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("\n".join(_text(rnd, "pos") for _ in range(5)) + "\n", encoding="utf-8")
    return {"pool": pool, "seeds": seeds, "n": 300, "positives": 30, "dir": tmp_path}


def _argv(e, *extra, out="out"):
    return ["eval", "--pool", str(e["pool"]), "--seeds", str(e["seeds"]), "--embedder", "hashing",
            "--cache-dir", str(e["dir"] / "cache"), "--out", str(e["dir"] / out), "--no-progress", *extra]


def _check_curve(rep, n, positives, *, may_be_empty=False):
    curve = rep["curve"]
    if not curve:  # a method that found nothing to query (IBG with no post above τ)
        assert may_be_empty and rep["queried"] == 0 and set(rep["recall_at"].values()) == {0.0}
        return
    qs = [p[0] for p in curve]
    recalls = [p[1] for p in curve]
    assert all(len(p) == 3 for p in curve)
    assert all(0 <= r <= 1 for r in recalls) and all(0 <= p[2] <= 1 for p in curve)
    assert all(b >= a for a, b in zip(recalls, recalls[1:])), "recall must not decrease along the curve"
    assert all(b > a for a, b in zip(qs, qs[1:]))
    assert set(rep["recall_at"]) == set(rep["precision_at"]) == set(rep["f1_at"]) == RATIOS
    assert all(0 <= v <= 1 for d in ("recall_at", "precision_at", "f1_at") for v in rep[d].values())


def test_eval_writes_documented_metrics(small_eval, capsys):
    e = small_eval
    rc = main(_argv(e, "--method", "all", "--tau", "0.3,0.5", "--dmax", "5,10", "--k0", "10",
                    "--max-query-ratio", "0.2", "--gble-k", "6"))
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    out = e["dir"] / "out"
    doc = json.loads((out / "metrics.json").read_text())
    assert set(doc) == {"dataset", "methods"}
    ds = doc["dataset"]
    assert ds["posts"] == 300 and ds["positives"] == 30 and ds["embedder"].startswith("hashing")
    names = set(doc["methods"])
    expected_ibg = {f"ibg[tau={t},dmax={d}]" for t in ("0.3", "0.5") for d in (5, 10)}
    assert expected_ibg <= names
    assert {"random", "knn", "gble[k=6,K0=10]", "lr[K0=10,B=full]", "model[K0=10]",
            "policy[sources=ibg+gble+model,tau=0.3,dmax=5,K0=10]"} <= names
    assert len(names) == len(expected_ibg) + 6
    for name, rep in doc["methods"].items():
        assert any(name == m or name.startswith(m + "[") for m in METHODS), name
        assert {"params", "recall_at", "precision_at", "f1_at", "curve"} <= set(rep)
        _check_curve(rep, 300, 30)
    assert doc["methods"]["ibg[tau=0.3,dmax=5]"]["params"] == {"tau": 0.3, "dmax": 5}
    # recall_at reads the exact curve at floor(q * N) queries (300 points: the curve is not downsampled)
    for name, rep in doc["methods"].items():
        if name == "random":
            continue
        assert rep["queried"] <= math.floor(0.2 * 300)
        for key in RATIOS:
            m = min(math.floor(float(key) * 300 + 1e-9), rep["queried"])
            if m:
                q, r, p = rep["curve"][m - 1]
                assert q == pytest.approx(m / 300)
                assert rep["recall_at"][key] == pytest.approx(r)
                assert rep["precision_at"][key] == pytest.approx(p)
                assert r * 30 == pytest.approx(round(r * 30))   # whole positives found
    assert (out / "curves.png").read_bytes()[:8] == PNG
    assert (out / "seeds.txt").read_text().count("\n") == 5
    assert any((e["dir"] / "cache").rglob("*.npz"))
    assert "metrics.json" in captured.out


def test_eval_acs_seed_selection(small_eval, capsys):
    e = small_eval
    rnd = random.Random(1)
    big = e["dir"] / "seed_pool.txt"
    big.write_text("\n".join(_text(rnd, "pos") for _ in range(40)) + "\n", encoding="utf-8")
    rc = main(_argv(e, "--seed-pool", str(big), "--acs", "3", "--coverage", "0.6", "--method", "ibg,knn",
                    "--tau", "0.3"))
    assert rc == 0, capsys.readouterr().err
    doc = json.loads((e["dir"] / "out" / "metrics.json").read_text())
    sel = doc["dataset"]["seeds"]
    assert sel["selection"] == "acs" and sel["k"] == 3 and sel["coverage"] >= 0.6
    picked = (e["dir"] / "out" / "seeds.txt").read_text(encoding="utf-8").splitlines()
    pool_lines = big.read_text(encoding="utf-8").splitlines()
    assert len(picked) == 3 == len(set(picked)) and set(picked) <= set(pool_lines)
    assert set(doc["methods"]) == {"ibg[tau=0.3,dmax=10]", "knn"}


def _write(path, data: bytes | str):
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("case", ["missing_label", "no_positives", "empty_seeds", "non_utf8_pool", "unknown_method",
                                  "missing_pool", "no_seeds_arg", "acs_and_random"])
def test_eval_bad_inputs_exit_2_with_one_error_line(small_eval, capsys, case):
    e = dict(small_eval)
    d = e["dir"]
    extra = []
    if case == "missing_label":
        e["pool"] = _write(d / "nolabel.tsv", "sentence\tscore\nfoo\t1\n")
    elif case == "no_positives":
        e["pool"] = _write(d / "allneg.tsv", "sentence\tlabel\nfoo\t0\nbar\t0\n")
    elif case == "empty_seeds":
        e["seeds"] = _write(d / "empty.txt", "")
    elif case == "non_utf8_pool":
        e["pool"] = _write(d / "latin.tsv", "sentence\tlabel\ncaf\xe9\t1\n".encode("latin-1"))
    elif case == "unknown_method":
        extra = ["--method", "ibg,svm"]
    elif case == "acs_and_random":
        extra = ["--acs", "2", "--random-seeds", "2"]
    elif case == "missing_pool":
        e["pool"] = d / "does-not-exist.tsv"
    argv = _argv(e, *extra)
    if case == "no_seeds_arg":
        i = argv.index("--seeds")
        del argv[i:i + 2]
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert not (d / "out" / "metrics.json").exists()


# ---------------------------------------------------------------------- the real model
@pytest.mark.slow
def test_eval_real_model_on_sst2_sample(shared_dir, tmp_path, capsys):
    dev = shared_dir / "data" / "sst2" / "dev.tsv"
    synth = shared_dir / "data" / "sst2" / "synthetic_supergen_ctrl_sst2.tsv"
    if not dev.exists() or not synth.exists():
        pytest.skip("SST-2 files are not in the reference folder")
    positives = []
    for line in synth.read_text(encoding="utf-8").splitlines()[1:]:
        parts = line.split("\t")
        if len(parts) > 1 and parts[1].strip() == "1" and parts[0].strip():
            positives.append(parts[0].strip())
        if len(positives) == 20:
            break
    assert len(positives) == 20
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("\n".join(positives) + "\n", encoding="utf-8")
    cache = tmp_path / "cache"

    def run(out):
        rc = main(["eval", "--pool", str(dev), "--seeds", str(seeds), "--sample", "400", "--method", "ibg,knn,random",
                   "--tau", "0.6,0.4", "--embedder", "minilm-onnx", "--cache-dir", str(cache), "--out", str(tmp_path / out), "--no-progress"])
        assert rc == 0, capsys.readouterr().err
        return json.loads((tmp_path / out / "metrics.json").read_text())

    first = run("out1")
    files = sorted(p for p in cache.rglob("*") if p.is_file())
    assert files, "the embedding cache is empty after a run"
    assert first["dataset"]["posts"] == 400 and first["dataset"]["embedder"].startswith("onnx:all-MiniLM-L6-v2")
    assert set(first["methods"]) == {"random", "ibg[tau=0.6,dmax=10]", "ibg[tau=0.4,dmax=10]", "knn"}
    for name, rep in first["methods"].items():
        _check_curve(rep, 400, first["dataset"]["positives"], may_be_empty=name.startswith("ibg[tau=0.6"))
    assert first["methods"]["ibg[tau=0.4,dmax=10]"]["queried"] > 0 and first["methods"]["knn"]["queried"] == 60
    assert (tmp_path / "out1" / "curves.png").read_bytes()[:8] == PNG

    second = run("out2")
    assert sorted(p for p in cache.rglob("*") if p.is_file()) == files, "second run embedded again"
    for name in first["methods"]:
        assert second["methods"][name]["recall_at"] == first["methods"][name]["recall_at"]
