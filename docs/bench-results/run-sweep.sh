#!/usr/bin/env bash
# Reproduces docs/benchmarks.md: step cost, then the UUID memorisation sweep, sequentially
# (about an hour on 2 cores). A run whose output file already reaches its last step is skipped.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=docs/bench-results
done_run() { [ -f "$1" ] && grep -q "\"step\":$2," "$1"; }
[ -s $out/step-r8.jsonl ] || bin/mora bench step --rank 8 --json > $out/step-r8.jsonl
[ -s $out/step-r64.jsonl ] || bin/mora bench step --rank 64 --json > $out/step-r64.jsonl
mem() { # method rank lr steps
  f=$out/memorize-$1-r$2-lr$3.jsonl
  done_run $f $4 || bin/mora bench memorize --method $1 --rank $2 --lr $3 --pairs 32 --steps $4 --eval-every 25 --json > $f
}
for lr in 1e-3 3e-3 1e-2; do mem mora 8 $lr 150; mem lora 8 $lr 150; done
mem lora 8 5e-3 150      # LoRA's best r=8 rate lies between 3e-3 and 1e-2 (1e-2 diverges)
mem mora 8 3e-2 150
for lr in 1e-3 3e-3 1e-2; do mem mora 64 $lr 100; mem lora 64 $lr 100; done
f=$out/memorize-full-lr3e-4.jsonl
done_run $f 100 || bin/mora bench memorize --method full --lr 3e-4 --pairs 32 --steps 100 --eval-every 25 --json > $f
