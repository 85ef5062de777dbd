#!/usr/bin/env bash
# The frontier study: gancli's recipes against the best published numbers under the study's protocol
# (10,000 samples, seed 1, from the moving average, against the 10,000 test images of the row's dataset,
# TF-2015 Inception, grey tiled to 3 channels; the row's own classifier for class balance). Each row is
# a `gan train --config` file in examples/frontier/recipes/ (a seed repeat, `ROW-seedK`, adds --seed K),
# trained, sampled and scored, and scored again through calibrated DRS (`ROW+drs`: `gan calibrate` on the
# first N test images, then discriminator rejection sampling); the ablation rows (`ablation-...`) train a
# recipe at its search's budget with one technique changed. Writes examples/frontier.md (each row's
# per-epoch log kept in examples/frontier/logs/, committed, which its table reads).
#
# Restartable: a step whose output exists (and is newer than its input) is skipped, and a training
# interrupted at any moment is continued bit-exactly by `gan resume`. Run it again after any stop.
#
#   export GANCLI_DATA=../shared/data              # mnist/, fashion-mnist/ (and the `inception` extra)
#   examples/frontier.sh                           # every row: days on 2 CPU cores, so in workers:
#   OMP_NUM_THREADS=1 examples/frontier.sh mnist-conv mnist-conv-seed1 &     # two workers, one core each
#   OMP_NUM_THREADS=1 examples/frontier.sh mnist-mlp mnist-mlp-wgan-clip
#   examples/frontier.sh --list                    # the rows (a Slurm array takes them by index)
#   examples/frontier.sh --table                   # only rewrite examples/frontier.md from what is there
#   examples/frontier.sh --search mnist-conv --trials 30   # gan tune on examples/frontier/spaces/mnist-conv.toml:
#                                                  # its study in DIR/search/mnist-conv/study.journal (continued
#                                                  # where it stopped), its trials on the page
#   examples/frontier.sh --smoke --out /tmp/f      # CI-sized: 1 epoch, tiny nets, 256 images, classifier only
#
# ROW...: only these rows; default: all. Options: -n N (images per sample), --inception-n M (<= N; 0 skips
# the Inception), --inception-precision auto|fp32|bf16, --out DIR (default examples/frontier),
# --results FILE (default DIR/../frontier.md), --smoke, --search TARGET with --trials N (the study's
# total, default 30) and --workers W.
set -euo pipefail

N=10000 INCEPTION_N=10000 PRECISION=auto OUT=examples/frontier RESULTS= DRAWS=100 SMOKE=0 SEARCH= TRIALS=30 WORKERS=1
RECIPES=$(dirname "$0")/frontier/recipes SPACES=$(dirname "$0")/frontier/spaces
# ROW RECIPE [OPTIONS...]: what each row trains; its target (mnist-conv, ...) is its name less -seedK.
# `--from ROW2` (frontier.sh's, not gan's) trains ROW on from ROW2's finished run: ROW2 is trained first,
# its run folder copied, and the copy resumed to ROW's epochs (for a recipe without an lr decay, whose run
# reads its epoch count nowhere else: the same config as one run trained to ROW's epochs, not bit-identical
# where their epochs ran at other thread counts). Workers given rows of one chain wait for each other.
ROWS=(
    # the MNIST conv target's seed 0 is the run of its 60-epoch ablation row (the same config: see there)
    "mnist-conv mnist-conv --from ablation-mnist-conv-r1-0.1-60-epochs"
    "mnist-conv-seed1 mnist-conv --seed 1"
    "mnist-conv-seed2 mnist-conv --seed 2"
    "mnist-mlp mnist-mlp"
    "mnist-mlp-seed1 mnist-mlp --seed 1"
    "mnist-mlp-seed2 mnist-mlp --seed 2"
    "fashion-conv fashion-conv"
    "fashion-conv-seed1 fashion-conv --seed 1"
    "fashion-conv-seed2 fashion-conv --seed 2"
    "mnist-mlp-wgan-clip mnist-mlp-wgan-clip"
    "mnist-mlp-wgan-clip-seed1 mnist-mlp-wgan-clip --seed 1"
    "mnist-mlp-wgan-clip-seed2 mnist-mlp-wgan-clip --seed 2"
    # the ablation of the conv recipe, against its row mnist-conv (fashion-conv): each of its techniques
    # off in turn, and candidates on (top-k; cutout, the rest of Zhao et al.'s DiffAugment for digits).
    # MNIST's recipe was Lucic et al.'s 20 epochs without R1 until R1 at 0.1 for 60 epochs (below) beat it:
    # its rows pin that recipe (--epochs 20 --r1 0), whose seed-0 row is ablation-mnist-conv-20-epochs-no-r1
    "ablation-mnist-conv-20-epochs-no-r1 mnist-conv --epochs 20 --r1 0"
    "ablation-mnist-conv-dcgan mnist-conv --arch dcgan --epochs 20 --r1 0"
    "ablation-mnist-conv-no-diffaug mnist-conv --diffaug= --epochs 20 --r1 0"
    "ablation-mnist-conv-no-ema mnist-conv --ema 0 --epochs 20 --r1 0"
    "ablation-mnist-conv-top-k mnist-conv --top-k 0.5 --top-k-decay 0.9 --epochs 20 --r1 0"
    "ablation-mnist-conv-cutout mnist-conv --diffaug translation,cutout --epochs 20 --r1 0"
    "ablation-mnist-conv-lr-decay mnist-conv --lr-decay linear --epochs 20 --r1 0"
    "ablation-fashion-conv-lr-decay fashion-conv --epochs 20 --lr-decay linear"
    # and the issue's regularisers and step sizes for D: R1 (Mescheder et al. 2018, gamma 1, lazily every
    # 16th D step, the default), two time-scale learning rates (Heusel et al. 2017: D at 4e-4, G at 1e-4, in
    # place of 2e-4 for both)
    "ablation-mnist-conv-r1 mnist-conv --r1 1 --epochs 20"
    "ablation-mnist-conv-ttur mnist-conv --lr-d 0.0004 --lr-g 0.0001 --epochs 20 --r1 0"
    # R1 balanced the classes (class KL 0.0085 against 0.0333) and cutout lowered the Inception FID: both
    "ablation-mnist-conv-r1-cutout mnist-conv --r1 1 --diffaug translation,cutout --epochs 20"
    # R1 at a tenth of the strength (gamma 0.1): does a lighter penalty keep the balance without the FID's cost?
    # And spectral norm on D (Miyato et al. 2018), the issue's other regulariser for D
    "ablation-mnist-conv-r1-0.1 mnist-conv --r1 0.1 --epochs 20"
    "ablation-mnist-conv-spectral-norm mnist-conv --spectral-norm --epochs 20 --r1 0"
    # R1 at 0.1 (Inception 5.86, class KL 0.0085) still improved at epoch 20 (per-epoch classifier FID 32-38 over
    # epochs 16-20) where the recipe's stalled (its 30-epoch row: 40-54 over epochs 20-30, 7.67 against 6.92 at 20):
    # R1 at 0.1 for 30, 40 and 60 epochs, each trained on from the row before it, its epochs past 20 at
    # OMP_NUM_THREADS=2 (the first 20 at 1)
    "ablation-mnist-conv-r1-0.1-30-epochs mnist-conv --r1 0.1 --epochs 30 --from ablation-mnist-conv-r1-0.1"
    "ablation-mnist-conv-r1-0.1-40-epochs mnist-conv --r1 0.1 --epochs 40 --from ablation-mnist-conv-r1-0.1-30-epochs"
    # 4.92 and class KL 0.0022 at 40 epochs, target 1's FID and balance; its recall (0.636, 0.666, 0.683 at 20, 30, 40)
    # still short of 0.7 and rising: 60 epochs (4.25, recall 0.707, class KL 0.0033: target 1 met on one seed; 1.98 h), now the recipe
    "ablation-mnist-conv-r1-0.1-60-epochs mnist-conv --r1 0.1 --epochs 60 --from ablation-mnist-conv-r1-0.1-40-epochs"
    # and the budget: both conv recipes were still improving at Lucic et al.'s 20 epochs. MNIST's at 30;
    # Fashion-MNIST's, which trains 30 since that row beat its 20, at 20
    "ablation-mnist-conv-30-epochs mnist-conv --epochs 30 --r1 0"
    "ablation-fashion-conv-20-epochs fashion-conv --epochs 20"
    # the MLP recipe with top-k training (Sinha et al. 2020's anneal, 0.99 an epoch down to 0.5), at its 100 epochs
    "ablation-mnist-mlp-top-k mnist-mlp --top-k 0.5 --top-k-decay 0.99"
    # the MLP recipe with the course's generator against Lucic et al.'s conv discriminator (--d-arch; the
    # course-MLP target leaves D free), at 20 epochs: read against mnist-mlp's log at epoch 20 and its row
    "ablation-mnist-mlp-conv-d-20-epochs mnist-mlp --d-arch infogan --epochs 20"
    # and from it: a slower moving average (the conv recipes' 0.999), and the budget (still improving at 20)
    "ablation-mnist-mlp-conv-d-ema-0.999 mnist-mlp --d-arch infogan --epochs 20 --ema 0.999"
    "ablation-mnist-mlp-conv-d-30-epochs mnist-mlp --d-arch infogan --epochs 30"
    # the conv-D recipe at 50 epochs (its per-epoch FID still fell at 30). Without a decay nothing else of the
    # run reads its epochs, so its first 30 are the 30-epoch row's: it was trained on from that run
    "ablation-mnist-mlp-conv-d-50-epochs mnist-mlp --d-arch infogan --epochs 50 --from ablation-mnist-mlp-conv-d-30-epochs"
    # and at the target's 100 epochs (precision still rising at 50: 0.51, 0.55, 0.59 at 20, 30, 50), trained on
    # from the 50-epoch run the same way, its epochs 51-100 at OMP_NUM_THREADS=2 (the rest at 1), so a rerun
    # from scratch at one thread is not bit-identical to it
    "ablation-mnist-mlp-conv-d-100-epochs mnist-mlp --d-arch infogan --epochs 100 --from ablation-mnist-mlp-conv-d-50-epochs"
    # the WGAN recipe's lr schedule off, over 3 seeds like its target: its lr (8e-4) held constant (ahead of
    # the search's 4e-4 to epoch 30 in the screens, then stalled and rose), and the search's lr (4e-4) held
    # constant, the recipe before this ablation
    "ablation-mnist-mlp-wgan-clip-no-lr-decay mnist-mlp-wgan-clip --lr-decay none"
    "ablation-mnist-mlp-wgan-clip-no-lr-decay-seed1 mnist-mlp-wgan-clip --lr-decay none --seed 1"
    "ablation-mnist-mlp-wgan-clip-no-lr-decay-seed2 mnist-mlp-wgan-clip --lr-decay none --seed 2"
    "ablation-mnist-mlp-wgan-clip-lr-4e-4-no-decay mnist-mlp-wgan-clip --lr 0.00039656750817710094 --lr-decay none"
    "ablation-mnist-mlp-wgan-clip-lr-4e-4-no-decay-seed1 mnist-mlp-wgan-clip --lr 0.00039656750817710094 --lr-decay none --seed 1"
    "ablation-mnist-mlp-wgan-clip-lr-4e-4-no-decay-seed2 mnist-mlp-wgan-clip --lr 0.00039656750817710094 --lr-decay none --seed 2"
)
# ROW's line of ROWS (status 1 for a name that is none), and every row's name
row_line() { printf '%s\n' "${ROWS[@]}" | grep "^$1 "; }
row_names() { printf '%s\n' "${ROWS[@]}" | cut -d' ' -f1; }
SELECTED=() LIST=0 TABLE=0
while [ $# -gt 0 ]; do
    case "$1" in
        --list) LIST=1 ;;
        --table) TABLE=1 ;;
        --smoke) SMOKE=1 N=256 INCEPTION_N=0 ;;
        -n) N=$2; shift ;;
        --inception-n) INCEPTION_N=$2; shift ;;
        --inception-precision) PRECISION=$2; shift ;;
        --out) OUT=$2; shift ;;
        --results) RESULTS=$2; shift ;;
        --search) SEARCH=$2; shift
                  [ -f "$SPACES/$SEARCH.toml" ] || { echo "frontier.sh: no search space $SPACES/$SEARCH.toml" >&2; exit 2; } ;;
        --trials) TRIALS=$2; shift ;;
        --workers) WORKERS=$2; shift ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "frontier.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) row_line "$1" > /dev/null || { echo "frontier.sh: unknown row $1 (see --list)" >&2; exit 2; }
           SELECTED+=("$1") ;;
    esac
    shift
done
if [ "$LIST" = 1 ]; then row_names; exit 0; fi
if [ ${#SELECTED[@]} -eq 0 ]; then
    mapfile -t SELECTED < <(row_names)
    [ "$SMOKE" = 1 ] && SELECTED=(mnist-conv ablation-mnist-conv-no-diffaug mnist-mlp-wgan-clip)
fi
RESULTS=${RESULTS:-$(dirname "$OUT")/frontier.md}
RUNS=$OUT/runs
# the smoke variant: every recipe at 1 epoch with networks small enough for a test
SMOKE_OPTIONS=(--epochs 1 --conv-width 4 --g-hidden 32 --d-hidden 32 --eval-n 64)
mkdir -p "$OUT"/{runs,samples,scores,grids,times}
# shellcheck source=examples/lib.sh
. "$(dirname "$0")/lib.sh"

# the dataset of a recipe (its `data` key): its test split is the reference, its classifier the features
dataset() { sed -n 's/^data = "\([^"]*\)".*/\1/p' "$RECIPES/$1.toml"; }

# ROW, in workers at once: one worker at a time works on a row (a lock file per row in RUNS, with flock
# where it is installed), so that two rows trained on from the same row do not both train it
run_row() {
    if command -v flock > /dev/null; then (flock 9; train_row "$1") 9> "$RUNS/.$1.lock"; else train_row "$1"; fi
}

# ROW: trained to the recipe's epochs (or the row's --epochs), sampled, scored on the Inception and the
# dataset's classifier; a target's row (not an ablation) also sampled and scored through calibrated DRS
train_row() {
    local row=$1 recipe words options=() epochs data from= i
    read -r _ recipe words <<< "$(row_line "$row")"
    read -ra words <<< "${words:-}"
    [ "$SMOKE" = 1 ] && words+=("${SMOKE_OPTIONS[@]}")
    epochs=$(sed -n 's/^epochs = //p' "$RECIPES/$recipe.toml")
    for ((i = 0; i < ${#words[@]}; i++)); do
        case ${words[i]} in
            --from) from=${words[i + 1]}; i=$((i + 1)); continue ;;
            --epochs) epochs=${words[i + 1]} ;;
        esac
        options+=("${words[i]}")
    done
    if [ -n "$from" ]; then
        row_line "$from" > /dev/null || { echo "frontier.sh: $row trains on from $from, not a row" >&2; exit 2; }
        run_row "$from"
        # not trained: nothing to go on from (a stopped one's copy keeps its .stopped mark, and is scored as it stopped)
        [ -f "$RUNS/$from/checkpoint.safetensors" ] || return 0
        # the smoke variant trains every row 1 epoch, and a row trained on from another 1 more than it
        [ "$SMOKE" = 1 ] && epochs=$(($(completed "$RUNS/$from") + 1))
        if [ ! -d "$RUNS/$row" ]; then
            say "$row: trained on from $from"
            rm -rf "$RUNS/$row.partial"
            cp -a "$RUNS/$from" "$RUNS/$row.partial" && mv "$RUNS/$row.partial" "$RUNS/$row"
        fi
    fi
    train "$row" "$epochs" train --config "$RECIPES/$recipe.toml" "${options[@]}"
    [ -f "$RUNS/$row/checkpoint.safetensors" ] || return 0
    keep_log "$row"
    data=$(dataset "$recipe")
    local REF=$data:test
    sample "$row" "$row"
    score_both "$row" "$data"
    case $row in ablation-*) return 0 ;; esac
    calibrate "$row"
    sample "$row+drs" "$row/checkpoint-calibrated.safetensors" --reject-method drs
    score_both "$row+drs" "$data"
}

# the real-data floor of a dataset on the Inception: its first N training images against its test split
floor() {
    local data=$1 json=$OUT/scores/real-floor-$1.inception.json
    [ "$INCEPTION_N" -gt 0 ] && [ ! -f "$json" ] || return 0
    say "real-data floor: $data train against $data test"
    gan score "$data" --ref "$data:test" --features inception -n "$INCEPTION_N" --precision "$PRECISION" --json > "$json.partial"
    mv "$json.partial" "$json"
}

report() {
    python "$(dirname "$0")/frontier_table.py" "$OUT" "$RESULTS" --recipes "$RECIPES" --spaces "$SPACES" -n "$N" \
        --inception-n "$INCEPTION_N" $(row_names)
}

# TARGET's search: gan tune on its space, the study in a journal file (text: committed with the page,
# so that a fresh clone continues it), the trials' runs beside it
search() {
    local dir=$OUT/search/$1 storage
    storage=(--storage "$OUT/search/$1/study.journal" --runs "$OUT/search/$1/runs" --plot "$OUT/search/$1/tune.png")
    mkdir -p "$dir"
    say "$1: searching, $TRIALS trials in all"
    gan tune "$SPACES/$1.toml" --trials "$TRIALS" --workers "$WORKERS" "${storage[@]}" > /dev/null
    gan tune "$SPACES/$1.toml" --show "${storage[@]}" --json > "$dir/study.json"
    cp "$dir/runs/BEST.toml" "$dir/BEST.toml" 2>/dev/null || true
}

if [ "$TABLE" = 1 ]; then report; exit 0; fi
if [ -n "$SEARCH" ]; then search "$SEARCH"; report; exit 0; fi
for row in "${SELECTED[@]}"; do
    run_row "$row"
    case $row in fashion-*) floor fashion-mnist ;; *) floor mnist ;; esac
    report
done
say "wrote $RESULTS"
