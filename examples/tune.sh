#!/usr/bin/env bash
# The search of examples/tune/mlp.toml (the course MLP on MNIST, 20 epochs a trial, pruned on the
# per-epoch evaluated FID), then its best recipe retrained for 100 epochs and scored under the
# study's protocol (10,000 samples, seed 1, from the moving average where the recipe keeps one,
# against the 10,000 MNIST test images, Inception), next to today's `best` (squared Hellinger,
# 12.60 +- 0.45 over 3 seeds, examples/results.md). Writes examples/tune.md.
#
# Restartable: `gan tune` continues its study (interrupted trials resumed), the retraining resumes,
# a sample or score that exists is kept. Run it again after any stop.
#
#   export GANCLI_DATA=../shared/data             # mnist/ (and the Inception: the `inception` extra)
#   examples/tune.sh                              # 30 trials, then the 100 epochs: about 5 hours on 2 CPU cores
#   examples/tune.sh --trials 40 --workers 2      # 10 more trials, two at a time
#   examples/tune.sh --table                      # only rewrite examples/tune.md from the study
#
# Options: --trials N (the study's total, default 30), --workers W, --epochs E (the retraining's,
# default 100; 0 skips it), --space FILE, --out DIR (default examples/tune), --results FILE.
set -euo pipefail

TRIALS=30 WORKERS=1 EPOCHS=100 SPACE=examples/tune/mlp.toml OUT=examples/tune RESULTS= TABLE=0 N=10000 DRAWS=1 PRECISION=auto
while [ $# -gt 0 ]; do
    case "$1" in
        --trials) TRIALS=$2; shift ;;
        --workers) WORKERS=$2; shift ;;
        --epochs) EPOCHS=$2; shift ;;
        --space) SPACE=$2; shift ;;
        --out) OUT=$2; shift ;;
        --results) RESULTS=$2; shift ;;
        -n) N=$2; shift ;;
        --table) TABLE=1 ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "tune.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
RESULTS=${RESULTS:-$(dirname "$OUT")/tune.md}
STUDY=$(basename "$SPACE" .toml)
TRIAL_RUNS=$OUT/runs RUNS=$OUT/retrain
mkdir -p "$OUT"/{runs,retrain,samples,scores,grids,times}
# shellcheck source=examples/lib.sh
. "$(dirname "$0")/lib.sh"

# the study in a journal file (text, committed with the results): a fresh clone continues the search,
# its complete and pruned trials kept, the runs it lacks trained again
STORAGE=(--storage "$OUT/study.journal" --runs "$TRIAL_RUNS" --plot "$OUT/tune.png")
if [ "$TABLE" = 0 ]; then
    gan tune "$SPACE" --trials "$TRIALS" --workers "$WORKERS" "${STORAGE[@]}" > /dev/null
fi
gan tune "$SPACE" --show "${STORAGE[@]}" --json > "$OUT/study.json"
cp "$TRIAL_RUNS/BEST.toml" "$OUT/BEST.toml" 2>/dev/null || true
if [ "$TABLE" = 0 ] && [ "$EPOCHS" -gt 0 ] && [ -f "$OUT/BEST.toml" ]; then
    train best "$EPOCHS" train --config "$OUT/BEST.toml" --epochs "$EPOCHS"
    sample best best
    score best inception
    score best mnist
fi

python - "$OUT" "$RESULTS" "$SPACE" "$EPOCHS" "$TRIALS" "$(dirname "$0")" <<'EOF'
import json
import os
import sys
from pathlib import Path

out, results, space, epochs, asked = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
sys.path.insert(0, sys.argv[6])
from tune_table import search_lines, space_epochs  # noqa: E402

study = json.loads((out / "study.json").read_text())
lines = [
    "# gan tune: the course MLP on MNIST",
    "",
    f"Written by `examples/tune.sh --trials {asked}`: `gan tune {space}` (TPE sampler, median pruner after 5",
    "complete trials and 2 epochs; each trial a 20-epoch run evaluated after every epoch: 2,000 samples on the",
    "MNIST classifier against 2,000 test images; the value minimised is the last epoch's FID). The space:",
    "",
    "```toml",
    Path(space).read_text().strip(),
    "```",
    "",
    *search_lines(study, space_epochs(Path(space)), os.path.relpath(out, results.parent), asked),
]
best = study["best"]
scores = {k: out / "scores" / f"best.{k}.json" for k in ("inception", "mnist")}
if all(p.is_file() for p in scores.values()):
    inception, mnist = (json.loads(p.read_text()) for p in scores.values())
    lines += ["", f"## The best recipe at {epochs} epochs", "",
              f"`gan train --config examples/tune/BEST.toml --epochs {epochs}`, sampled 10,000 (seed 1) and scored "
              "against the 10,000 MNIST test images:", "",
              "| recipe | Inception FID | precision | recall | MNIST-classifier FID | classes (KL) |",
              "|---|---:|---:|---:|---:|---|",
              f"| tuned (trial {best['number']}) | **{inception['fid']:.2f}** | {inception['precision']:.3f} | "
              f"{inception['recall']:.3f} | {mnist['fid']:.2f} | {mnist['classes_present']}/10 ({mnist['class_kl']:.3f}) |",
              "| `best` of the study (squared Hellinger, EMA 0.999), 3 seeds | 12.60 ± 0.45 | 0.53-0.57 | | | |"]
else:
    lines += ["", f"The best recipe's {epochs}-epoch retraining has not been scored yet."]
results.write_text("\n".join(lines) + "\n")
print(f"wrote {results}", file=sys.stderr)
EOF
