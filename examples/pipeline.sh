#!/usr/bin/env bash
# The one-line evaluation: sample with discriminator rejection, keep the best-scored half,
# score what is left. Nothing touches the disk in between: a samples stream flows through pipes.
#
#   examples/pipeline.sh [CHECKPOINT-OR-RUN] [N]     # default: the latest run, 10,000 images
#
# Scores with the MNIST classifier's features (fast); put --features inception in the last
# command for FIDs comparable with papers (GANCLI_INCEPTION_WEIGHTS set).
set -euo pipefail
RUN=${1:-runs/latest}
N=${2:-10000}

gan sample "$RUN" -n $(( 2 * N )) --reject 0.6 | gan filter --ckpt "$RUN" --keep-top 0.5 | gan score --features mnist -n "$N" --json
