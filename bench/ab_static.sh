#!/bin/bash
# The static drain, alternating two checkouts on Apache Kafka (the machine's load moves between runs, so a
# before/after taken minutes apart compares two machines). Usage, from the repository root:
#   git archive <base commit> | tar -x -C /tmp/base && cp bench/static.py bench/stack.py /tmp/base/bench/ \
#     && ln -s "$(readlink -f .venv)" /tmp/base/.venv && ln -s "$(readlink -f .cache)" /tmp/base/.cache
#   bench/ab_static.sh /tmp/base "$PWD" /tmp/ab        # writes /tmp/ab/ab_{base,new}_{1,2}.json and prints the drains
#   (ROUNDS="3" bench/ab_static.sh ... runs round 3 only; POSTS=4000 posts per drain; BATCH=32: that micro-batch
#   for both instead of each checkout's default)
set -u
base=$1; new=$2; out=${3:-/tmp/ab}; posts=${POSTS:-4000}
mkdir -p "$out"
for round in ${ROUNDS:-1 2}; do
  for v in base new; do
    if [ "$v" = base ]; then d=$base; else d=$new; fi
    echo "== $v round $round $(date -u +%H:%M:%S) $(cat /proc/loadavg)"
    (cd "$d" && PYTHONPATH=$d timeout 600 .venv/bin/python -m bench.static "$posts" kafka "${BATCH:-}" "" 0 > "$out/ab_${v}_$round.json" 2>/dev/null)
    grep "^\[bench" "$out/ab_${v}_$round.json" | grep "static drain"
  done
done
echo "== done $(date -u +%H:%M:%S) $(cat /proc/loadavg)"
