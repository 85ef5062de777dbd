#!/usr/bin/env bash
# Every f-divergence of the table at its defaults: `gan train fgan --div NAME --epochs 30` on real
# MNIST with seed 0, and seed 1 as well for the unbounded conjugates (kl, pearson, jeffrey); 10,000
# samples each, scored with the MNIST classifier against MNIST test. Then the headline recipe,
# JS for 6 epochs then KL for 94 (the references' 100), sampled with rejection at 0.6 and scored
# with Inception on 10,000 against the 10,000 MNIST test images. Writes examples/divergences.md.
#
# Restartable, like study.sh: run it again after any interruption; finished steps are skipped,
# an interrupted training resumes bit-exactly, a run the divergence guard stops is reported.
#
#   export GANCLI_DATA=../shared/data/mnist GANCLI_INCEPTION_WEIGHTS=...   # see the README
#   examples/divergences.sh                      # about 9 hours on 2 CPU cores
#   examples/divergences.sh --smoke --out /tmp/d # CI-sized: 1 epoch, alpha2 and JS->KL, 256 images, /tmp/d.md
#   OMP_NUM_THREADS=1 examples/divergences.sh kl pearson &   # rows in parallel: two workers, one
#   OMP_NUM_THREADS=1 examples/divergences.sh js6-kl jeffrey # core each (~1.5x the throughput)
#
# ROW...: only these rows (names as in the table; js6-kl is the recipe); default: all of them.
# Options: --epochs E (per divergence, default 30), --kl-epochs E (after 6 of JS, default 94),
# -n N (images per sample), --inception-n M (0 skips Inception), --out DIR (runs, samples, scores,
# grids), --results FILE (default: DIR.md, so examples/divergences.md), --smoke.
set -euo pipefail

EPOCHS=30 JS_EPOCHS=6 KL_EPOCHS=94 N=10000 DRAWS=100 INCEPTION_N=10000 PRECISION=auto OUT=examples/divergences RESULTS=
# the unbounded conjugates first: they are what the defaults must make trainable
DIVERGENCES=(kl kl-seed1 pearson pearson-seed1 jeffrey jeffrey-seed1 reverse-kl neyman squared-hellinger js gan
             total-variation alpha0.5 alpha2)
ROWS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) EPOCHS=1 JS_EPOCHS=1 KL_EPOCHS=1 N=256 INCEPTION_N=0 DIVERGENCES=(alpha2) ;;
        --epochs) EPOCHS=$2; shift ;;
        --kl-epochs) KL_EPOCHS=$2; shift ;;
        -n) N=$2; shift ;;
        --inception-n) INCEPTION_N=$2; shift ;;
        --out) OUT=$2; shift ;;
        --results) RESULTS=$2; shift ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "divergences.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) [[ " ${DIVERGENCES[*]} js6-kl " == *" $1 "* ]] || { echo "divergences.sh: unknown row $1" >&2; exit 2; }
           ROWS+=("$1") ;;
    esac
    shift
done
[ ${#ROWS[@]} -gt 0 ] || ROWS=("${DIVERGENCES[@]}" js6-kl)
RESULTS=${RESULTS:-${OUT%/}.md}
RUNS=$OUT/runs
mkdir -p "$OUT"/{runs,samples,scores,grids,times}
# shellcheck source=examples/lib.sh
. "$(dirname "$0")/lib.sh"

# ROW -> the `gan train fgan` options that make it: the divergence (and alpha order) and the seed; --ema 0,
# the raw generator, as the table was measured before the moving average became the default
options() {
    local row=$1 seed=0
    case $row in *-seed1) seed=1; row=${row%-seed1} ;; esac
    case $row in
        alpha*) echo "--div alpha --alpha ${row#alpha} --seed $seed --ema 0" ;;
        *) echo "--div $row --seed $seed --ema 0" ;;
    esac
}

# the table so far: written after every row, so that an interrupted study still shows what it has
report() {
    python "$(dirname "$0")/divergences_table.py" "$OUT" "$RESULTS" --epochs "$EPOCHS" --kl-epochs "$KL_EPOCHS" \
        -n "$N" "${DIVERGENCES[@]}"
}

# ROW: trained, then (if the guard left a checkpoint) sampled and scored, then the table rewritten
evaluate() {
    local row=$1
    if [ -f "$RUNS/$row/checkpoint.safetensors" ]; then
        sample "$row" "$row"
        score "$row" mnist
    fi
    report
}

for row in "${ROWS[@]}"; do
    [ "$row" = js6-kl ] && continue
    # shellcheck disable=SC2046
    train "$row" "$EPOCHS" train fgan $(options "$row") --epochs "$EPOCHS"
    evaluate "$row"
done
[[ " ${ROWS[*]} " == *" js6-kl "* ]] || exit 0
train js6 "$JS_EPOCHS" train fgan --div js --epochs "$JS_EPOCHS"
train js6-kl "$(( JS_EPOCHS + KL_EPOCHS ))" resume "$RUNS/js6" --div kl --epochs "$KL_EPOCHS"
evaluate js6-kl
if [ -f "$RUNS/js6-kl/checkpoint.safetensors" ]; then
    sample js6-kl+reject js6-kl --reject 0.6
    score js6-kl+reject mnist
    if [ "$INCEPTION_N" -gt 0 ]; then
        score js6-kl+reject inception "$INCEPTION_N"
        score js6-kl inception "$INCEPTION_N"
    fi
    report
fi
say "wrote $RESULTS"
