#!/usr/bin/env bash
# Fashion-MNIST end to end, at the tool's defaults less the moving average (`gan train vanilla --data fashion-mnist
# --epochs 30 --ema 0`, as the page was measured before it became the default)
# (the course MLP, evaluated after every epoch on the Fashion-MNIST classifier against 2,000 Fashion
# test images, keeping best.safetensors), `gan plot` of its curves, 10,000 samples (seed 1) from its
# last and its best evaluated checkpoint, each scored with the Inception (10,000 vs the 10,000
# Fashion-MNIST test images, the study's protocol) and with the Fashion-MNIST classifier, and the
# real-data floor on both (train against test). Writes examples/fashion.md and its pictures in
# examples/fashion/ (curves.png, grids/last.png, grids/best.png).
#
# Restartable: a step whose output exists (and is newer than its input) is skipped, and a training
# interrupted at any moment is continued bit-exactly by `gan resume`. Run it again after any stop.
#
#   export GANCLI_DATA=../shared/data          # fashion-mnist/ (and the Inception: the `inception` extra)
#   examples/fashion.sh                        # about 40 minutes on 2 CPU cores
#   examples/fashion.sh --smoke --out /tmp/f   # CI-sized: 1 epoch, 256 images, the classifier only
#
# Options: --epochs E, -n N (images per sample), --inception-n M (<= N; 0 skips the Inception),
# --out DIR (default examples/fashion), --results FILE (default DIR/../fashion.md), --smoke.
set -euo pipefail

EPOCHS=30 N=10000 INCEPTION_N=10000 OUT=examples/fashion RESULTS= DRAWS=1 PRECISION=auto
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) EPOCHS=1 N=256 INCEPTION_N=0 ;;
        --epochs) EPOCHS=$2; shift ;;
        -n) N=$2; shift ;;
        --inception-n) INCEPTION_N=$2; shift ;;
        --out) OUT=$2; shift ;;
        --results) RESULTS=$2; shift ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "fashion.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
RESULTS=${RESULTS:-$(dirname "$OUT")/fashion.md}
RUNS=$OUT/runs REF=fashion-mnist:test
mkdir -p "$OUT"/{runs,samples,scores,grids,times}
# shellcheck source=examples/lib.sh
. "$(dirname "$0")/lib.sh"

# --ema 0: the page was measured at the defaults before the moving average became one of them
train vanilla "$EPOCHS" train vanilla --data fashion-mnist --epochs "$EPOCHS" --ema 0
if [ ! "$OUT/curves.png" -nt "$RUNS/vanilla/log.jsonl" ]; then
    gan plot "$RUNS/vanilla" -o "$OUT/curves.png"
fi
sample last vanilla
sample best vanilla/best.safetensors
for row in last best; do
    score_both "$row" fashion-mnist
done
# the floor: the test split scored as if generated, against the first N training images
floor() {
    local features=$1 count=$2 json=$OUT/scores/real-floor.$1.json
    [ -f "$json" ] && return
    say "real-data floor on $features features"
    gan score fashion-mnist:test --ref fashion-mnist --features "$features" -n "$count" --json > "$json.partial"
    mv "$json.partial" "$json"
}
floor fashion-mnist "$N"
[ "$INCEPTION_N" -gt 0 ] && floor inception "$INCEPTION_N"

python - "$OUT" "$RESULTS" "$EPOCHS" "$N" "$INCEPTION_N" <<'EOF'
import json
import sys
from pathlib import Path

out, results, epochs, n, inception_n = Path(sys.argv[1]), Path(sys.argv[2]), *sys.argv[3:]
log = [json.loads(line) for line in (out / "runs" / "vanilla" / "log.jsonl").read_text().splitlines()]
evaluated = [r for r in log if "fid" in r]
best = min(evaluated, key=lambda r: r["fid"])


def scores(row: str, features: str) -> dict | None:
    path = out / "scores" / f"{row}.{features}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def cells(result: dict | None) -> list[str]:
    return [f"{result[k]:.2f}" if k == "fid" else f"{result[k]:.3f}" for k in ("fid", "precision", "recall")] \
        if result else ["", "", ""]


def coverage(result: dict | None) -> str:
    if result is None:
        return ""
    missing = f", no {', '.join(result['classes_missing'])}" if result["classes_missing"] else ""
    return f"{result['classes_present']}/{result['classes_total']}{missing}, KL {result['class_kl']:.3f}"


count = lambda text: f"{int(text):,}"
lines = [
    "# Fashion-MNIST at the defaults: the course MLP, vanilla GAN",
    "",
    f"Written by `examples/fashion.sh` (`gan train vanilla --data fashion-mnist --epochs {epochs} --ema 0`, every other",
    "option at its default). Samples: seed 1 from the last checkpoint and from",
    f"`best.safetensors`. Inception: TF-2015 pool3, {count(inception_n)} samples against the first "
    f"{count(inception_n)} Fashion-MNIST",
    f"test images. Classifier: gancli's Fashion-MNIST classifier, {count(n)} against {count(n)}. The floor is the",
    f"Fashion-MNIST test split scored against the first {count(n)} training images (`gan score fashion-mnist:test",
    "--ref fashion-mnist`).",
    "",
    f"Per-epoch evaluation (2,000 vs 2,000 test images, Fashion classifier): best FID {best['fid']:.2f} at epoch "
    f"{best['epoch']}, last {evaluated[-1]['fid']:.2f} at epoch {evaluated[-1]['epoch']}.",
    "",
    "| row | Inception FID | precision | recall | classifier FID | precision | recall | classes |",
    "|---|---:|---:|---:|---:|---:|---:|---|",
]
for row, label in (("last", f"last (epoch {evaluated[-1]['epoch']})"), ("best", f"best (epoch {best['epoch']})"),
                   ("real-floor", "real data (test vs train)")):
    classifier = scores(row, "fashion-mnist")
    lines.append("| " + " | ".join([label, *cells(scores(row, "inception")), *cells(classifier), coverage(classifier)]) + " |")
results.write_text("\n".join(lines) + "\n")
print(f"wrote {results}", file=sys.stderr)
EOF
