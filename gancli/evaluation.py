"""Quality during training (`--eval-every`): FID, precision/recall, density/coverage and digit coverage
of a fixed set of generated images, on the shipped MNIST classifier's features, against MNIST test.

The latents are drawn once from the run's own seed by a generator of their own, so every evaluated
epoch of a run scores the same z, and evaluating changes nothing that training draws: a run with
the evaluation on trains bit-exactly as the same run with it off.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from gancli.config import TrainConfig
from gancli.errors import GancliError

EVAL_SEED_OFFSET = 104729  # apart from the grid's latents (seed + 7919) and the training's generators
# What an evaluated epoch adds to its log line (design note section 3)
EVAL_FIELDS = ("fid", "precision", "recall", "density", "coverage", "classes_present", "class_kl")

Evaluator = Callable[[torch.nn.Module], dict]


def make_evaluator(config: TrainConfig, reference: torch.Tensor, device: torch.device | str = "cpu", *,
                   batch_size: int = 1000, warn: Callable[[str], None] | None = None) -> Evaluator:
    """G -> the metrics of `config.eval_n` images of G against as many `reference` images (uint8
    [N, C, H, W], MNIST test for MNIST runs), plus `eval_n` and `eval_seconds`.

    `batch_size` is the images per generator pass. The reference features come from the feature
    cache (computed once per reference set) and KID is left out: it costs more than everything
    else together. Fewer reference images than eval_n evaluate on as many as there are.
    """
    from gancli.features import mnist_extractor, reference_features
    from gancli.metrics import class_coverage, evaluate
    from gancli.models import generate_images

    n = min(config.eval_n, len(reference))
    if n < 2:
        raise GancliError(f"the per-epoch evaluation needs at least 2 reference images, found {len(reference)}",
                          "train with --eval-every 0")
    extractor = mnist_extractor(device=device)
    real_features, _ = reference_features(extractor, reference[:n], warn=warn)
    z = torch.randn(n, config.z_dim, generator=torch.Generator().manual_seed(config.seed + EVAL_SEED_OFFSET))

    def evaluate_generator(G: torch.nn.Module) -> dict:
        started = time.perf_counter()
        features, predicted = extractor.run(generate_images(G, z, device, batch_size))
        scores = evaluate(real_features, features, kid_subsets=0) | class_coverage(predicted)
        return {k: scores[k] for k in EVAL_FIELDS} | {"eval_n": n, "eval_seconds": time.perf_counter() - started}

    return evaluate_generator
