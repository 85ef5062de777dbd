#!/usr/bin/env bash
# The reference study's stabilisation recipe: f-GAN Jensen-Shannon pre-training, then KL,
# next to KL from scratch. The JS start gives KL a discriminator whose output is already
# informative; from scratch, KL's exp-shaped conjugate can blow up, and gancli's divergence
# guard stops the run at the first non-finite value instead of saving NaN weights.
#
#   examples/pretrain_switch.sh [RUNS-DIR]     # PRETRAIN_EPOCHS (default 5), KL_EPOCHS (default 15)
set -euo pipefail
RUNS=${1:-runs}
PRETRAIN_EPOCHS=${PRETRAIN_EPOCHS:-5}
KL_EPOCHS=${KL_EPOCHS:-15}
RECIPE=(--lr 2e-4 --betas 0.5,0.999 --d-weight-decay 1e-4 --clip-grad-norm 1 --seed 0 --runs "$RUNS")

# guarded NAME GAN-ARGS...: exit 1 is the divergence guard at work (the last good checkpoint is
# kept), which this example reports instead of stopping.
guarded() {
    local name=$1 status=0; shift
    gan "$@" --name "$name" || status=$?
    case $status in
        0) echo "$name: trained to the end" >&2 ;;
        1) echo "$name: stopped by the divergence guard; its last good checkpoint is kept" >&2 ;;
        *) exit "$status" ;;
    esac
}

gan pretrain --epochs "$PRETRAIN_EPOCHS" "${RECIPE[@]}" --name js-pretrain
guarded js-then-kl resume "$RUNS/js-pretrain" --div kl --epochs "$KL_EPOCHS" --runs "$RUNS"
guarded kl-from-scratch train fgan --div kl --epochs $(( PRETRAIN_EPOCHS + KL_EPOCHS )) "${RECIPE[@]}"

for run in js-then-kl kl-from-scratch; do
    [ -f "$RUNS/$run/checkpoint.safetensors" ] || { echo "$run: no checkpoint (stopped in its first epoch)"; continue; }
    printf '%s: ' "$run"
    gan sample "$RUNS/$run" -n 2000 | gan score --features mnist -n 2000 --json
done
