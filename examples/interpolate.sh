#!/usr/bin/env bash
# Latent interpolation, lerp against slerp: the same 8 pairs of endpoints (seeds 0..7), 10 steps each.
# With a Gaussian prior, lerp's midpoints have a smaller norm than any typical latent, so its
# middle columns tend to look fainter or blurrier; slerp keeps the norm (White 2016).
#
#   examples/interpolate.sh [CHECKPOINT-OR-RUN] [OUT-DIR]   # default: the latest run, ./interpolation
set -euo pipefail
RUN=${1:-runs/latest}
OUT=${2:-interpolation}
mkdir -p "$OUT"

for mode in lerp slerp; do
    gan interpolate "$RUN" --mode "$mode" --pairs 8 --steps 10 --seed 0 -o "$OUT/$mode.png"
done
gan interpolate "$RUN" --mode slerp --pairs 1 --steps 10 --seed 3 -o "$OUT/strip.png"   # one row, for a README
gan interpolate "$RUN" --mode slerp --pairs 4 --steps 24 --seed 0 -o "$OUT/slerp.gif"
echo "wrote $OUT/lerp.png, $OUT/slerp.png, $OUT/strip.png and $OUT/slerp.gif" >&2
