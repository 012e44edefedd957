"""Build the demo sample shipped in stream_app/devstack/demo_data/ from ../shared/data/sst2 (run once; output is committed).

posts.jsonl: 3,000 posts drawn from the imbalanced SST-2 train split (all negatives kept, positives
subsampled to 10 %, as in the paper), with their labels for the simulated moderator.
seeds.txt: 50 LLM-written positive movie reviews (FuseGen, gpt-3.5-turbo-instruct), picked by ACS.
"""
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from synapse_stream.data import load_pool, load_seed_texts, make_imbalanced  # noqa: E402
from synapse_stream.embedders import CachedEmbedder, make_embedder  # noqa: E402
from synapse_stream.seeds import acs_select  # noqa: E402

SST = ROOT.parent / "shared" / "data" / "sst2"
OUT = ROOT / "stream_app" / "devstack" / "demo_data"

pool = make_imbalanced(load_pool(SST / "train.tsv"), 0.10, seed=0)
rows = np.sort(np.random.default_rng(7).choice(len(pool), 3000, replace=False))
sample = pool.subset(rows.tolist())
OUT.mkdir(parents=True, exist_ok=True)
order = np.random.default_rng(8).permutation(len(sample))  # stream order
with open(OUT / "posts.jsonl", "w", encoding="utf-8") as fh:
    for i in order:
        fh.write(json.dumps({"id": f"sst2-{sample.ids[i]}", "text": sample.texts[i], "label": int(sample.labels[i])}) + "\n")
synth = load_seed_texts(SST / "synthetic_fusegen_gpt35instruct_moviereview.tsv")
emb = CachedEmbedder(make_embedder("minilm-onnx"), ROOT / ".cache" / "embeddings")
picks = acs_select(emb.encode(synth), 50, coverage=0.5).indices
(OUT / "seeds.txt").write_text("\n".join(synth[i] for i in picks) + "\n", encoding="utf-8")
print(f"{len(sample)} posts ({int(sample.labels.sum())} positive), {len(picks)} seeds -> {OUT}")
