# The restartable steps of the example studies (study.sh, divergences.sh, fashion.sh, conditional.sh,
# frontier.sh, tune.sh), sourced by them. They read OUT (outputs: samples/, scores/, grids/, times/), RUNS (the
# runs folder), N (images per sample), INCEPTION_N (images score_both scores on the Inception, 0 none),
# DRAWS (rejection gives up after DRAWS*N draws), PRECISION (Inception numerics) and REF (the reference
# images of `score` and `calibrate`, default mnist:test).

say() { printf '\n== %s\n' "$*" >&2; }

# epochs a run has completed, from its log (0 if none)
completed() {
    python -c 'import json, sys; lines = open(sys.argv[1]).read().splitlines(); print(json.loads(lines[-1])["epoch"] if lines else 0)' \
        "$1/log.jsonl" 2>/dev/null || echo 0
}

# fresh OUTPUT INPUT: OUTPUT exists and INPUT is not newer (a model trained further is sampled and scored again)
fresh() { [ -f "$1" ] && [ ! "$2" -nt "$1" ]; }

# train NAME EPOCH GAN-ARGS...: run `gan GAN-ARGS --name NAME` until NAME has completed EPOCH epochs;
# an interrupted run is resumed from the step where it stopped (and a finished one extended to EPOCH).
# A run the divergence guard stops (exit 1) is a result, not a failure: it keeps its last good
# checkpoint, gets a .stopped mark with the reason, and the study goes on; Ctrl-C still stops it.
train() {
    local name=$1 target=$2; shift 2
    local run=$RUNS/$name status=0
    [ -f "$run/.stopped" ] && return
    if [ -f "$run/checkpoint.safetensors" ]; then
        [ "$(completed "$run")" -ge "$target" ] && return
        say "$name: resuming"
        gan resume "$run" --until-epoch "$target" 2> >(tee "$OUT/times/$name.train" >&2) || status=$?
    else
        say "$name: gan $*"
        rm -rf "$run"                       # interrupted before its first checkpoint
        gan "$@" --runs "$RUNS" --name "$name" 2> >(tee "$OUT/times/$name.train" >&2) || status=$?
    fi
    [ "$status" -eq 1 ] && mkdir -p "$run" && tail -n 1 "$OUT/times/$name.train" > "$run/.stopped"
    [ "$status" -le 1 ] || exit "$status"
}

# keep_log NAME: a copy of RUNS/NAME/log.jsonl as OUT/logs/NAME.jsonl, which git keeps (runs/ it ignores),
# so that a table that reads it is rebuilt in a fresh clone that trains only some of its rows
keep_log() {
    mkdir -p "$OUT/logs"
    cp "$RUNS/$1/log.jsonl" "$OUT/logs/$1.jsonl"
}

# sample ROW SOURCE SAMPLE-ARGS...: N images to samples/ROW.safetensors (written atomically) from
# SOURCE, a run of RUNS or a checkpoint file under it. A model whose discriminator rejects (nearly)
# every draw gets samples/ROW.failed, which the table reports.
sample() {
    local row=$1 source=$2; shift 2
    local checkpoint=$RUNS/$source
    [ -d "$checkpoint" ] && checkpoint=$checkpoint/checkpoint.safetensors
    fresh "$OUT/samples/$row.safetensors" "$checkpoint" || fresh "$OUT/samples/$row.failed" "$checkpoint" && return
    say "$row: sampling"
    rm -f "$OUT/samples/$row.failed"
    local start=$SECONDS
    if gan sample "$checkpoint" -n "$N" --seed 1 --max-draws $(( DRAWS * N )) "$@" --grid "$OUT/grids/$row.png" \
        -o "$OUT/samples/$row.safetensors" 2> "$OUT/times/$row.log"; then
        echo $(( SECONDS - start )) > "$OUT/times/$row.sample"
    else
        tail -n 1 "$OUT/times/$row.log" | tee "$OUT/samples/$row.failed" >&2
    fi
}

# score_both ROW FEATURES: `score ROW FEATURES` (the dataset's classifier) and, unless INCEPTION_N is 0,
# the Inception's on INCEPTION_N images
score_both() {
    score "$1" "$2"
    [ "$INCEPTION_N" -eq 0 ] || score "$1" inception "$INCEPTION_N"
}

# calibrate MODEL: RUNS/MODEL/checkpoint-calibrated.safetensors (`gan calibrate` on the first N images of
# REF, default mnist:test, never trained on), its calibration errors in scores/MODEL.calibration.json
calibrate() {
    local run=$RUNS/$1
    fresh "$run/checkpoint-calibrated.safetensors" "$run/checkpoint.safetensors" && return
    say "$1: calibrating"
    gan calibrate "$run" --ref "${REF:-mnist:test}" -n "$N" --json > "$OUT/scores/$1.calibration.json.partial"
    mv "$OUT/scores/$1.calibration.json.partial" "$OUT/scores/$1.calibration.json"
}

# score ROW FEATURES [M]: scores/ROW.FEATURES.json, against the first M (default N) images of REF.
score() {
    local row=$1 features=$2 count=${3:-$N}
    local json=$OUT/scores/$row.$features.json
    fresh "$json" "$OUT/samples/$row.safetensors" || [ ! -f "$OUT/samples/$row.safetensors" ] && return
    say "$row: scoring with $features features"
    gan score "$OUT/samples/$row.safetensors" --ref "${REF:-mnist:test}" --features "$features" -n "$count" \
        --precision "$PRECISION" --json > "$json.partial"
    mv "$json.partial" "$json"
}
