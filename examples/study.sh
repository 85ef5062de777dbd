#!/usr/bin/env bash
# The reference study at its own budget, under the design note's protocol: every row of the
# reference table with the course MLP (batch 64, 100 epochs; WGAN-GP 150, as the reference), plus
# gancli's best recipe for that MLP and a DCGAN. Every run keeps a moving average of G (--ema 0.999);
# each model is sampled (10,000 images, seed 1) from the average (`M`), from the raw generator
# (`M+raw`) and with rejection at 0.6 through a calibrated discriminator (`M+reject`, after
# `gan calibrate`), then scored with Inception (10,000 vs the 10,000 MNIST test images) and the MNIST
# classifier; some rows add calibrated DRS (see rows below), and four models a threshold sweep
# (examples/threshold.py) that shows why rejection helps or hurts them. Writes examples/results.md.
#
# Restartable: a step whose output exists (and is newer than its input) is skipped, and a training
# interrupted at any moment is continued bit-exactly by `gan resume`. Run it again after any stop.
#
#   export GANCLI_DATA=../shared/data/mnist    # the Inception weights: the `inception` extra (README)
#   examples/study.sh                            # everything: about 12 hours on 2 CPU cores
#   OMP_NUM_THREADS=1 examples/study.sh vanilla fgan-js wgan &     # models in parallel: two workers,
#   OMP_NUM_THREADS=1 examples/study.sh fgan-kl best wgan-gp       # one core each
#   examples/study.sh --smoke --out /tmp/smoke   # CI-sized: 1 epoch, 4 models, 512 images, MNIST features
#
# MODEL...: only these models (--list prints them; see MODELS below); default: all. --table only rewrites
# the table from what is there (while workers run, say). Options: --epochs E (per model;
# WGAN-GP trains E*3/2), --dcgan-epochs E (default E), -n N (images per sample), --draws D
# (rejection gives up after D*N draws, default 100), --inception-n M (<= N; 0 skips Inception),
# --precision auto|fp32|bf16 (training, default fp32), --inception-precision auto|fp32|bf16 (default auto:
# bf16 autocast on CPUs with native bf16, FID within 0.3% of fp32), --out DIR, --results FILE, --smoke.
set -euo pipefail

EPOCHS=100 DCGAN_EPOCHS= N=10000 DRAWS=100 INCEPTION_N=10000 TRAIN_PRECISION=fp32 PRECISION=auto OUT=examples/reference RESULTS=
SWEEP=(-n 2000)   # examples/threshold.py's sample size per point (and thresholds)
MODELS=(vanilla fgan-js fgan-kl fgan-kl-cosine wgan wgan-gp msgan msgan-schedule best dcgan
        vanilla-seed1 vanilla-seed2 best-seed1 best-seed2)
SELECTED=() LIST=0 TABLE=0
while [ $# -gt 0 ]; do
    case "$1" in
        --list) LIST=1 ;;
        --table) TABLE=1 ;;
        --smoke) EPOCHS=1 N=512 DRAWS=4 INCEPTION_N=0 MODELS=(vanilla fgan-kl wgan-gp msgan) SWEEP=(-n 64 --thresholds 0.3,0.6) ;;
        --epochs) EPOCHS=$2; shift ;;
        --dcgan-epochs) DCGAN_EPOCHS=$2; shift ;;
        -n) N=$2; shift ;;
        --draws) DRAWS=$2; shift ;;
        --inception-n) INCEPTION_N=$2; shift ;;
        --precision) TRAIN_PRECISION=$2; shift ;;
        --inception-precision) PRECISION=$2; shift ;;
        --out) OUT=$2; shift ;;
        --results) RESULTS=$2; shift ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "study.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) [[ " ${MODELS[*]} " == *" $1 "* ]] || { echo "study.sh: unknown model $1" >&2; exit 2; }
           SELECTED+=("$1") ;;
    esac
    shift
done
if [ "$LIST" = 1 ]; then printf '%s\n' "${MODELS[@]}"; exit 0; fi   # the one list: slurm/study.sbatch reads it
WHOLE=0   # the whole study: it alone scores the real-data floor
[ ${#SELECTED[@]} -gt 0 ] || { SELECTED=("${MODELS[@]}"); WHOLE=1; }
RESULTS=${RESULTS:-$(dirname "$OUT")/results.md}
DCGAN_EPOCHS=${DCGAN_EPOCHS:-$EPOCHS}
GP_EPOCHS=$(( EPOCHS * 3 / 2 > 1 ? EPOCHS * 3 / 2 : 1 ))
JS_EPOCHS=$(( EPOCHS >= 10 ? 6 : 1 ))      # the reference recipe: KL after 6 epochs of JS
KL_EPOCHS=$(( EPOCHS - JS_EPOCHS > 0 ? EPOCHS - JS_EPOCHS : 1 ))
RUNS=$OUT/runs
mkdir -p "$OUT"/{runs,samples,scores,grids,times}
# shellcheck source=examples/lib.sh
. "$(dirname "$0")/lib.sh"

# MODEL: trained to its epochs. The MSGAN rows use the reference's knobs (lambda 0.05, D dropout
# 0.3); `fgan-kl-cosine` decays the lr on a cosine over the KL epochs (it was the first `best`: it
# scored worse than plain JS). `best` is gancli's recipe for the course MLP: the squared Hellinger
# f-GAN (the lowest FID of every divergence at 30 epochs, examples/divergences.md) with the tool's
# defaults (R1 10) and the moving average.
train_model() {
    local model=$1 seed=0
    case $model in *-seed[0-9]) seed=${model##*-seed} ;; esac
    local common=(--seed "$seed" --precision "$TRAIN_PRECISION" --ema 0.999)
    case $model in
        vanilla*) train "$model" "$EPOCHS" train vanilla "${common[@]}" --epochs "$EPOCHS" ;;
        fgan-js) train "$model" "$EPOCHS" train fgan --div js "${common[@]}" --epochs "$EPOCHS" ;;
        fgan-kl*)
            train "$model-js" "$JS_EPOCHS" train fgan --div js "${common[@]}" --epochs "$JS_EPOCHS"
            local decay=(); [ "$model" = fgan-kl-cosine ] && decay=(--lr-decay cosine)
            train "$model" $(( JS_EPOCHS + KL_EPOCHS )) resume "$RUNS/$model-js" --div kl "${decay[@]}" --epochs "$KL_EPOCHS" ;;
        best*) train "$model" "$EPOCHS" train fgan --div squared-hellinger "${common[@]}" --epochs "$EPOCHS" ;;
        wgan) train "$model" "$EPOCHS" train wgan "${common[@]}" --epochs "$EPOCHS" ;;
        wgan-gp) train "$model" "$GP_EPOCHS" train wgan-gp "${common[@]}" --epochs "$GP_EPOCHS" ;;
        msgan) train "$model" "$EPOCHS" train vanilla --ms-lambda 0.05 --d-dropout 0.3 "${common[@]}" --epochs "$EPOCHS" ;;
        msgan-schedule) train "$model" "$EPOCHS" train vanilla --ms-lambda 0.05 --ms-step 0.01 --ms-every 10 \
            --d-dropout 0.3 "${common[@]}" --epochs "$EPOCHS" ;;
        dcgan) train "$model" "$DCGAN_EPOCHS" train vanilla --arch dcgan "${common[@]}" --epochs "$DCGAN_EPOCHS" ;;
    esac
}

# MODEL -> its rows: the moving average, the raw generator, calibrated rejection at 0.6 (a seed
# repeat has the first and the last only); WGAN-GP (the course's best entry), vanilla, f-GAN JS, best
# and the DCGAN add calibrated DRS, which corrects the distribution where a threshold selects from it;
# MSGAN the reference's final recipe (rejection 0.6 and latent mixing); and the vanilla, f-GAN JS, KL
# with cosine decay and best rows rejection through the uncalibrated discriminator, to show what
# calibration changes.
rows() {
    local model=$1
    case $model in *-seed[0-9]) echo "$model $model+reject"; return ;; esac
    echo "$model $model+raw $model+reject"
    case $model in
        wgan-gp|dcgan) echo "$model+drs" ;;
        msgan) echo "$model+reject+mix" ;;
        vanilla|fgan-js|best) echo "$model+drs $model+reject-uncalibrated" ;;
        fgan-kl-cosine) echo "$model+reject-uncalibrated" ;;
    esac
}

# ROW from MODEL: its images (a row's suffixes pick the generator, the checkpoint and the rejection)
sample_row() {
    local row=$1 model=$2 calibrated=$2/checkpoint-calibrated.safetensors
    case ${row#"$model"} in
        "") sample "$row" "$model" ;;
        +raw) sample "$row" "$model" --raw-generator ;;
        +reject) sample "$row" "$calibrated" --reject 0.6 ;;
        +reject-uncalibrated) sample "$row" "$model" --reject 0.6 ;;
        +drs) sample "$row" "$calibrated" --reject-method drs ;;
        +reject+mix) sample "$row" "$calibrated" --reject 0.6 --mix ;;
    esac
}

# MODEL: why threshold rejection helps or hurts it, for the models the bar on rejection names and
# best: FID, precision, recall, class balance and acceptance as the threshold moves, as trained and
# calibrated, and the share of training against held-out images D accepts (examples/threshold.py)
SWEPT=(vanilla fgan-js wgan-gp best)
sweep() {
    local model=$1 dir=$OUT/threshold/$1
    [[ " ${SWEPT[*]} " == *" $model "* ]] || return 0
    fresh "$dir/threshold.json" "$RUNS/$model/checkpoint-calibrated.safetensors" && return
    say "$model: threshold sweep"
    python "$(dirname "$0")/threshold.py" "$RUNS/$model" "${SWEEP[@]}" -o "$dir"
}

report() {
    local all=()
    for model in "${MODELS[@]}"; do read -ra found <<< "$(rows "$model" | tr '\n' ' ')"; all+=("${found[@]}"); done
    python "$(dirname "$0")/results_table.py" "$OUT" "$RESULTS" --epochs "$EPOCHS" --dcgan-epochs "$DCGAN_EPOCHS" \
        -n "$N" --inception-n "$INCEPTION_N" --precision "$TRAIN_PRECISION" --inception-precision "$PRECISION" "${all[@]}"
}

if [ "$TABLE" = 1 ]; then report; exit 0; fi

for model in "${SELECTED[@]}"; do
    train_model "$model"
    [ -f "$RUNS/$model/checkpoint.safetensors" ] || { report; continue; }
    calibrate "$model"
    for row in $(rows "$model"); do
        sample_row "$row" "$model"
        score_both "$row" mnist
    done
    sweep "$model"
    report
done

[ "$WHOLE" = 1 ] || exit 0   # a worker's models are done; the whole study's run adds the floor
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
report
say "wrote $RESULTS"
