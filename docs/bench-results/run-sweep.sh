#!/usr/bin/env bash
# Reproduces docs/benchmarks.md: step cost, then the UUID memorisation sweep (sequential, ~1 h on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=docs/bench-results
bin/mora bench step --rank 8 --json > $out/step-r8.jsonl
bin/mora bench step --rank 64 --json > $out/step-r64.jsonl
for r in 8 64; do
  for lr in 1e-3 3e-3 1e-2; do
    bin/mora bench memorize --method mora --rank $r --lr $lr --pairs 32 --steps 150 --eval-every 25 --json > $out/memorize-mora-r$r-lr$lr.jsonl
    bin/mora bench memorize --method lora --rank $r --lr $lr --pairs 32 --steps 150 --eval-every 25 --json > $out/memorize-lora-r$r-lr$lr.jsonl
  done
done
bin/mora bench memorize --method full --lr 3e-4 --pairs 32 --steps 150 --eval-every 25 --json > $out/memorize-full-lr3e-4.jsonl
