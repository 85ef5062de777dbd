#!/usr/bin/env bash
# Class-conditional GANs against their unconditional twins, under the study's protocol: each model
# trained with `--conditional` (and without, the same recipe otherwise), 10,000 samples (seed 1; the
# conditional ones 1,000 of each class), scored with the Inception (10,000 vs the 10,000 test images of
# its dataset) and with the dataset's classifier (class accuracy on the class asked, intra-class FID,
# class KL), its training speed, and a 10 x 10 grid of each conditional model (a row per class).
# Writes examples/conditional.md, its pictures in examples/conditional/grids/ and each run's per-epoch
# log in examples/conditional/logs/ (committed, so the table is rebuilt from a fresh clone).
#
# Restartable: a step whose output exists (and is newer than its input) is skipped, and a training
# interrupted at any moment is continued bit-exactly by `gan resume`. Run it again after any stop.
#
#   export GANCLI_DATA=../shared/data              # mnist/, fashion-mnist/ (and the `inception` extra)
#   examples/conditional.sh                        # every model: about 5 hours at OMP_NUM_THREADS=1; two
#                                                  # invocations naming different models share 2 cores
#   examples/conditional.sh mlp-conditional mlp    # only these (--list names them)
#   examples/conditional.sh --smoke --out /tmp/c   # CI-sized: 1 epoch, tiny networks, the classifier only
#
# MODEL...: only these; default: all. Options: --epochs E (default 30), -n N (images per sample),
# --inception-n M (<= N; 0 skips the Inception), --out DIR (default examples/conditional),
# --results FILE (default DIR/../conditional.md), --smoke, --list.
set -euo pipefail

EPOCHS=30 N=10000 INCEPTION_N=10000 OUT=examples/conditional RESULTS= DRAWS=1 PRECISION=auto SMOKE=0 LIST=0
# MODEL DATASET OPTIONS...: the course MLP and the DCGAN on MNIST and on Fashion-MNIST, each twice
MODELS=(
    "mlp-conditional mnist --conditional"
    "mlp mnist"
    "dcgan-conditional mnist --arch dcgan --conditional"
    "dcgan mnist --arch dcgan"
    "fashion-mlp-conditional fashion-mnist --conditional"
    "fashion-mlp fashion-mnist"
    "fashion-dcgan-conditional fashion-mnist --arch dcgan --conditional"
    "fashion-dcgan fashion-mnist --arch dcgan"
)
SELECTED=()
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) SMOKE=1 EPOCHS=1 N=200 INCEPTION_N=0 ;;
        --epochs) EPOCHS=$2; shift ;;
        -n) N=$2; shift ;;
        --inception-n) INCEPTION_N=$2; shift ;;
        --out) OUT=$2; shift ;;
        --results) RESULTS=$2; shift ;;
        --list) LIST=1 ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "conditional.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) printf '%s\n' "${MODELS[@]}" | grep -q "^$1 " || { echo "conditional.sh: unknown model $1 (see --list)" >&2; exit 2; }
           SELECTED+=("$1") ;;
    esac
    shift
done
if [ "$LIST" = 1 ]; then printf '%s\n' "${MODELS[@]}" | cut -d' ' -f1; exit 0; fi
if [ ${#SELECTED[@]} -eq 0 ]; then
    mapfile -t SELECTED < <(printf '%s\n' "${MODELS[@]}" | cut -d' ' -f1)
    [ "$SMOKE" = 1 ] && SELECTED=(mlp-conditional mlp)
fi
RESULTS=${RESULTS:-$(dirname "$OUT")/conditional.md}
RUNS=$OUT/runs
SMOKE_OPTIONS=(--z-dim 8 --g-hidden 32 --d-hidden 32 --conv-width 4 --eval-n 64)
mkdir -p "$OUT"/{runs,samples,scores,grids,times}
# shellcheck source=examples/lib.sh
. "$(dirname "$0")/lib.sh"

for model in "${SELECTED[@]}"; do
    read -r _ data options <<< "$(printf '%s\n' "${MODELS[@]}" | grep "^$model ")"
    read -ra options <<< "$options"
    [ "$SMOKE" = 1 ] && options+=("${SMOKE_OPTIONS[@]}")
    train "$model" "$EPOCHS" train vanilla --data "$data" --ema 0.999 "${options[@]}" --epochs "$EPOCHS"
    [ -f "$RUNS/$model/checkpoint.safetensors" ] || continue
    keep_log "$model"
    case $model in
        *-conditional)
            sample "$model" "$model" --per-class $(( N / 10 ))
            if [ ! "$OUT/grids/$model-10x10.png" -nt "$RUNS/$model/checkpoint.safetensors" ]; then
                gan interpolate "$RUNS/$model" --pairs 10 --steps 10 -o "$OUT/grids/$model-10x10.png"
            fi ;;
        *) sample "$model" "$model" ;;
    esac
    REF=$data:test score_both "$model" "$data"
done

python - "$OUT" "$RESULTS" "$EPOCHS" "$N" "$INCEPTION_N" "${MODELS[@]%% *}" <<'EOF'
import json
import os
import sys
from pathlib import Path

out, results, epochs, n, inception_n, *models = sys.argv[1:]
out, results = Path(out), Path(results)
read = lambda path: json.loads(path.read_text()) if path.is_file() else None
lines = [
    "# Class-conditional GANs against their unconditional twins",
    "",
    f"Written by `examples/conditional.sh`: `gan train vanilla --ema 0.999 --epochs {epochs}` with and without",
    "`--conditional` (the course MLP, the DCGAN), on MNIST and Fashion-MNIST. Samples: seed 1, from the moving",
    f"average; the conditional models' {int(n):,} are {int(n) // 10:,} of each class (`--per-class`). Inception: "
    f"TF-2015 pool3, {int(inception_n):,} against the",
    f"first {int(inception_n):,} test images of the dataset. Classifier: the dataset's own, {int(n):,} against "
    f"{int(n):,} test images; accuracy is the share of conditional samples it",
    "assigns to the class they were drawn for, intra-class FID the mean over classes of each class's FID against",
    "that class's test images. Speed: training images/s of the last epoch.",
    "",
    "| model | Inception FID | precision | recall | classifier FID | class KL | accuracy | intra-class FID | images/s |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
]
for model in models:
    log = out / "logs" / f"{model}.jsonl"
    if not log.is_file():
        lines.append(f"| {model} | not yet run | | | | | | | |")
        continue
    last = json.loads(log.read_text().splitlines()[-1])
    inception = read(out / "scores" / f"{model}.inception.json")
    classes = next((read(p) for p in sorted((out / "scores").glob(f"{model}.*.json")) if ".inception." not in p.name), None)
    cells = [f"{inception[k]:.2f}" if k == "fid" else f"{inception[k]:.3f}" for k in ("fid", "precision", "recall")] \
        if inception else ["", "", ""]
    cells += [f"{classes['fid']:.2f}", f"{classes['class_kl']:.4f}"] if classes else ["", ""]
    cells += [f"{classes['class_accuracy']:.2%}" if "class_accuracy" in classes else "",
              f"{classes['intra_fid_mean']:.2f}" if "intra_fid_mean" in classes else ""] if classes else ["", ""]
    lines.append(f"| {model} | " + " | ".join(cells) + f" | {last['images_per_s']:,.0f} |")
grids = sorted((out / "grids").glob("*-10x10.png"))
for grid in grids:
    lines += ["", f"{grid.name.removesuffix('-10x10.png')}: a row per class, the latent moving along it "
              f"(`gan interpolate --pairs 10 --steps 10`)", "", f"![{grid.name}]({os.path.relpath(grid, results.parent)})"]
results.write_text("\n".join(lines) + "\n")
print(f"wrote {results}", file=sys.stderr)
EOF
