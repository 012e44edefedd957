#!/usr/bin/env bash
# Reproduce the paper's SST-2 experiment (section 6.1) with all-MiniLM-L6-v2.
# Needs ../shared/data/sst2 beside the repository. Writes docs/sst2/<run>/{metrics.json,curves.png,seeds.txt}.
set -euo pipefail
cd "$(dirname "$0")/.."
SST=${SST:-../shared/data/sst2}
OUT=${OUT:-docs/sst2}
SEEDS=${SEEDS:-$SST/synthetic_fusegen_gpt35instruct_moviereview.tsv}
TAUS=${TAUS:-0.5,0.55,0.6}
DMAX=${DMAX:-5,10,20}
common=(--pool "$SST/train.tsv" --imbalance 0.1 --seed 0 --max-query-ratio 0.15 --no-progress)

# iterative, ACS seeds: every method
synapse-stream eval "${common[@]}" --seed-pool "$SEEDS" --acs 100 --method all --tau "$TAUS" --dmax "$DMAX" \
  --title "Imbalanced SST-2, 100 ACS seeds (GPT-3.5), iterative" --out "$OUT/iterative-acs"
# iterative, random seeds
synapse-stream eval "${common[@]}" --seed-pool "$SEEDS" --random-seeds 100 --method ibg,knn,random --tau "$TAUS" --dmax "$DMAX" \
  --title "Imbalanced SST-2, 100 random seeds (GPT-3.5), iterative" --out "$OUT/iterative-random"
# single shot (T = 1), ACS and random seeds
synapse-stream eval "${common[@]}" --seed-pool "$SEEDS" --acs 100 --method ibg,random --rounds 1 --tau "$TAUS" --dmax "$DMAX" \
  --title "Imbalanced SST-2, 100 ACS seeds, single shot" --out "$OUT/single-acs"
synapse-stream eval "${common[@]}" --seed-pool "$SEEDS" --random-seeds 100 --method ibg,random --rounds 1 --tau "$TAUS" --dmax "$DMAX" \
  --title "Imbalanced SST-2, 100 random seeds, single shot" --out "$OUT/single-random"
# a second synthetic source: FewGen (CTRL tuned on 16 real examples), SST-2-style phrases
synapse-stream eval "${common[@]}" --seed-pool "$SST/synthetic_fewgen_ctrl_sst2_seed13.tsv" --acs 100 --method all \
  --tau 0.6,0.65,0.7 --dmax 5,10,20 --title "Imbalanced SST-2, 100 ACS seeds (FewGen/CTRL), iterative" --out "$OUT/iterative-acs-fewgen"
