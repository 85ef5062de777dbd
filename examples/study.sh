#!/usr/bin/env bash
# The reference study under one protocol: train every objective of the reference table (plus
# WGAN-GP and a DCGAN variant), sample N images per model with and without discriminator
# rejection (confidence >= 0.6; for WGAN critics the best-scored half), score them against
# MNIST test, and write one results table.
#
# Restartable: a step whose output exists (and is newer than its input) is skipped, and a training
# interrupted at any moment (Ctrl-C, a reboot) is continued bit-exactly by `gan resume`. Just run the
# script again; with more --epochs it trains the runs further and samples and scores them again.
#
#   export GANCLI_DATA=../shared/data/mnist                            # the four MNIST IDX .gz files
#   export GANCLI_INCEPTION_WEIGHTS=pt_inception-2015-12-05-6726825d.pth
#   examples/study.sh                                 # the full protocol: 100 epochs, 10,000 images
#   examples/study.sh --epochs 15 --precision bf16 --inception-n 2000  # what a 2-core CPU does in an hour
#   examples/study.sh --smoke --out /tmp/smoke        # CI-sized: 1 epoch, 512 images, MNIST extractor, 4N draws
#
# Options: --epochs E (per model), --dcgan-epochs E (the DCGAN's, default E: its epochs are ~10x
# slower on a CPU), -n N (images per sample), --draws D (rejection gives up after D*N draws, default 100), --inception-n M (images the Inception
# FID uses, <= N; 0 skips Inception), --precision fp32|bf16 (training and Inception numerics),
# --out DIR (runs, samples, scores, grids), --results FILE (the table), --smoke.
set -euo pipefail

EPOCHS=100 DCGAN_EPOCHS= N=10000 DRAWS=100 INCEPTION_N=10000 PRECISION=fp32 OUT=examples/study RESULTS=
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) EPOCHS=1 N=512 DRAWS=4 INCEPTION_N=0 ;;
        --epochs) EPOCHS=$2; shift ;;
        --dcgan-epochs) DCGAN_EPOCHS=$2; shift ;;
        -n) N=$2; shift ;;
        --draws) DRAWS=$2; shift ;;
        --inception-n) INCEPTION_N=$2; shift ;;
        --precision) PRECISION=$2; shift ;;
        --out) OUT=$2; shift ;;
        --results) RESULTS=$2; shift ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "study.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
RESULTS=${RESULTS:-$OUT/results.md}
DCGAN_EPOCHS=${DCGAN_EPOCHS:-$EPOCHS}
RUNS=$OUT/runs
mkdir -p "$OUT"/{runs,samples,scores,grids,times}
PRETRAIN=$(( EPOCHS >= 10 ? 5 : 1 ))      # the reference recipe: KL after 4-6 epochs of JS
SWITCHED=$(( EPOCHS - PRETRAIN > 0 ? EPOCHS - PRETRAIN : 1 ))
COMMON=(--seed 0 --precision "$PRECISION")
FGAN=(--lr 2e-4 --betas 0.5,0.999 --d-weight-decay 1e-4 --clip-grad-norm 1)

# shellcheck source=examples/lib.sh
. "$(dirname "$0")/lib.sh"

train vanilla "$EPOCHS" train vanilla "${COMMON[@]}" --epochs "$EPOCHS"
train fgan-js "$EPOCHS" train fgan --div js "${FGAN[@]}" "${COMMON[@]}" --epochs "$EPOCHS"
train fgan-js-pretrain "$PRETRAIN" pretrain "${FGAN[@]}" "${COMMON[@]}" --epochs "$PRETRAIN"
train fgan-kl $(( PRETRAIN + SWITCHED )) resume "$RUNS/fgan-js-pretrain" --div kl --epochs "$SWITCHED"
train wgan "$EPOCHS" train wgan "${COMMON[@]}" --epochs "$EPOCHS"
train wgan-gp "$EPOCHS" train wgan-gp "${COMMON[@]}" --epochs "$EPOCHS"
train msgan "$EPOCHS" train vanilla --ms-lambda 0.05 --d-dropout 0.3 "${COMMON[@]}" --epochs "$EPOCHS"
train msgan-schedule "$EPOCHS" train vanilla --ms-lambda 0.05 --ms-step 0.01 --ms-every 10 --d-dropout 0.3 "${COMMON[@]}" --epochs "$EPOCHS"
train dcgan-vanilla "$DCGAN_EPOCHS" train vanilla --arch dcgan "${COMMON[@]}" --epochs "$DCGAN_EPOCHS"

ROWS=()
for model in vanilla fgan-js fgan-kl wgan wgan-gp msgan msgan-schedule dcgan-vanilla; do
    sample "$model" "$model"
    case $model in
        # a critic estimates no density ratio, so no confidence threshold: keep its best-scored half
        wgan*) sample "$model+top" "$model" --keep-top 0.5; ROWS+=("$model" "$model+top") ;;
        *) sample "$model+reject" "$model" --reject 0.6; ROWS+=("$model" "$model+reject") ;;
    esac
done
sample "msgan+reject+mix" msgan --reject 0.6 --mix
ROWS+=("msgan+reject+mix")

for row in "${ROWS[@]}"; do
    score "$row" mnist
    [ "$INCEPTION_N" -gt 0 ] && score "$row" inception "$INCEPTION_N"
done
if [ "$INCEPTION_N" -gt 0 ] && [ ! -f "$OUT/scores/real-floor.inception.json" ]; then
    say "real-data floor: MNIST train against MNIST test"
    gan score mnist --ref mnist:test --features inception -n "$INCEPTION_N" --precision "$PRECISION" --json \
        > "$OUT/scores/real-floor.inception.json.partial"
    mv "$OUT/scores/real-floor.inception.json.partial" "$OUT/scores/real-floor.inception.json"
fi
if [ ! -f "$OUT/scores/real-floor.mnist.json" ]; then
    gan score mnist --ref mnist:test --features mnist -n "$N" --json > "$OUT/scores/real-floor.mnist.json.partial"
    mv "$OUT/scores/real-floor.mnist.json.partial" "$OUT/scores/real-floor.mnist.json"
fi

python "$(dirname "$0")/results_table.py" "$OUT" "$RESULTS" --epochs "$EPOCHS" --dcgan-epochs "$DCGAN_EPOCHS" -n "$N" \
    --inception-n "$INCEPTION_N" --precision "$PRECISION" "${ROWS[@]}"
say "wrote $RESULTS"
