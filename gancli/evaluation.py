"""Quality during training (`--eval-every`): FID, precision/recall, density/coverage and class coverage
of a fixed set of generated images, on the features of the classifier gancli ships for the run's
dataset (MNIST's, Fashion-MNIST's), against that dataset's test images.

The latents are drawn once from the run's own seed by a generator of their own, so every evaluated
epoch of a run scores the same z (a conditional run's for balanced classes, and the share of them the
classifier assigns to the class asked for is logged as `class_accuracy`), and evaluating changes
nothing that training draws: a run with the evaluation on trains bit-exactly as the same run with it off.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from gancli.config import TrainConfig
from gancli.errors import GancliError

EVAL_SEED_OFFSET = 104729  # apart from the grid's latents (seed + 7919) and the training's generators
# What an evaluated epoch adds to its log line (design note section 3), with eval_n, eval_features
# (the extractor's name: FIDs of two classifiers never compare) and eval_seconds
EVAL_FIELDS = ("fid", "precision", "recall", "density", "coverage", "classes_present", "classes_total",
               "classes_missing", "class_kl")

Evaluator = Callable[[torch.nn.Module], dict]



def make_evaluator(config: TrainConfig, reference: torch.Tensor, device: torch.device | str = "cpu", *,
                   batch_size: int = 1000, warn: Callable[[str], None] | None = None) -> Evaluator:
    """G -> the metrics of `config.eval_n` images of G against as many `reference` images (uint8
    [N, C, H, W], the test split of the run's dataset) on that dataset's classifier, plus `eval_n`,
    `eval_features` and `eval_seconds`.

    `batch_size` is the images per generator pass. The reference features come from the feature
    cache (computed once per reference set) and KID is left out: it costs more than everything
    else together. Fewer reference images than eval_n evaluate on as many as there are.
    """
    from gancli.config import classifier_domain
    from gancli.features import classifier_extractor, reference_features
    from gancli.metrics import class_accuracy, class_coverage, evaluate
    from gancli.models import generate_images
    from gancli.sampling import class_labels

    n = min(config.eval_n, len(reference))
    if n < 2:
        raise GancliError(f"the per-epoch evaluation needs at least 2 reference images, found {len(reference)}",
                          "train with --eval-every 0")
    domain = classifier_domain(config.data)
    if domain is None:
        raise GancliError(f"no per-epoch evaluation for {config.data}: gancli ships no classifier of it",
                          "train with --eval-every 0")
    extractor = classifier_extractor(domain, device=device)
    real_features, _ = reference_features(extractor, reference[:n], warn=warn)
    z = torch.randn(n, config.z_dim, generator=torch.Generator().manual_seed(config.seed + EVAL_SEED_OFFSET))
    labels = class_labels(config, n)  # a conditional run's classes in turn, as `gan sample` draws them

    def evaluate_generator(G: torch.nn.Module) -> dict:
        started = time.perf_counter()
        features, predicted = extractor.run(generate_images(G, z, device, batch_size, labels))
        scores = evaluate(real_features, features, kid_subsets=0) | class_coverage(predicted, extractor.classes)
        asked = {} if labels is None else {"class_accuracy": class_accuracy(predicted, labels)}
        return {k: scores[k] for k in EVAL_FIELDS} | asked | {"eval_n": n, "eval_features": extractor.name,
                                                              "eval_seconds": time.perf_counter() - started}

    return evaluate_generator
