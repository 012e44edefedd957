"""``synapse-stream trends eval`` on a tiny generated pool: the documented last line, a strong event found."""
from __future__ import annotations

import json
import random
import re

import pytest

from stream_app.cli import main

LINE = re.compile(r"^trends: events=(\d+) found=(\d+) delay_posts_p50=(\d+|na) false_per_100k=(\d+\.\d) "
                  r"purity=(\d\.\d\d)$")


def _pool(path, seed=0):
    rnd = random.Random(seed)
    topics = [[f"t{k}w{j}" for j in range(12)] for k in range(25)]
    common = [f"c{j}" for j in range(200)]
    rows = ["text\tlabel"]
    for _ in range(3000):
        words = rnd.sample(topics[rnd.randrange(len(topics))], 4) + rnd.sample(common, 4)
        rnd.shuffle(words)
        rows.append(" ".join(words) + "\t0")
    scam = "claim your free wallet airdrop token bonus now limited".split()
    for _ in range(60):
        words = rnd.sample(scam, 6) + rnd.sample(common, 2)
        rnd.shuffle(words)
        rows.append(" ".join(words) + "\t1")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_eval_finds_a_strong_planted_event_and_ends_with_the_line(tmp_path, capsys):
    pool = _pool(tmp_path / "pool.tsv")
    out = tmp_path / "out"
    rc = main(["trends", "eval", "--pool", str(pool), "--embedder", "hashing-384", "--cache-dir", "",
               "--events", "1", "--days", "4", "--event-hours", "12", "--radius", "0.3", "--novelty-sim", "0.3",
               "--out", str(out)])   # hashing vectors: texts sharing half their words have a cosine of about 0.4
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    m = LINE.match(lines[-1])
    assert m, lines[-1]
    events, found = int(m.group(1)), int(m.group(2))
    assert events == 1 and found == 1
    assert lines[-2].startswith("baseline: events=1 ")
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["stage"]["found"] == 1 and doc["stage"]["per_event"][0]["delay_posts"] >= 1
    assert float(m.group(5)) >= 0.5
    assert (out / "timeline.png").stat().st_size > 10_000
    assert (out / "proposals.jsonl").read_text().strip()


@pytest.mark.parametrize("extra,needle", [(["--events", "0"], "plant at least one event"),
                                          (["--event-label", "7"], "no post has label '7'")])
def test_eval_bad_input_exits_2_with_one_error_line(tmp_path, capsys, extra, needle):
    pool = _pool(tmp_path / "pool.tsv")
    rc = main(["trends", "eval", "--pool", str(pool), "--embedder", "hashing-384", "--cache-dir", "",
               "--out", str(tmp_path / "o"), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("error: ") and needle in err[-1]
