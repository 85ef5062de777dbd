"""What the default per-epoch evaluation costs, as a share of an epoch of training, on real MNIST.

In one process: the training loop's speed over --steps steps (train_speed.py's measurement,
projected to an epoch of 60,000 images at batch 64), then the evaluator's seconds per call (the median of --calls calls,
after a first call that fills the feature cache), for vanilla and for fgan at its defaults; then
how much faster the classifier runs in the extractor's layout than in the plain one.

    GANCLI_DATA=../shared/data/mnist GANCLI_CACHE=$(mktemp -d) python benchmarks/eval_cost.py [--steps 300]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from safetensors.torch import load_file
from train_speed import gancli_loop, images_per_s  # this folder is the script's, so on sys.path

from gancli.config import make_config
from gancli.data import load_images
from gancli.evaluation import make_evaluator
from gancli.features import CLASSIFIER_BATCH, classifier_input, classifier_weights
from gancli.models import DomainClassifier
from gancli.state import new_state


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--calls", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 2)))
    images, reference = load_images("mnist"), load_images("mnist:test")
    print(f"threads {torch.get_num_threads()}, {images.shape[0]} training images, batch 64")
    for objective in ("vanilla", "fgan"):
        config = make_config(objective)
        batches = images.shape[0] // config.batch_size
        speed = images_per_s({objective: gancli_loop(images, config.batch_size, objective)}, args.steps, config.batch_size)
        epoch = batches * config.batch_size / speed[objective]
        state = new_state(config)
        evaluate = make_evaluator(config, reference, "cpu")
        evaluate(state.G)  # the first call pays for the reference features (cached afterwards)
        calls = []
        for _ in range(args.calls):
            start = time.perf_counter()
            evaluate(state.G)
            calls.append(time.perf_counter() - start)
        cost = statistics.median(calls)
        print(f"{objective:8s}: epoch {epoch:6.1f} s, evaluation of {config.eval_n} images {cost:5.2f} s "
              f"= {cost / epoch:.1%} of an epoch")
    print(f"MNIST classifier on 10,000 images: {classifier_speedup(reference):.1f}x faster channels-last in batches "
          f"of {CLASSIFIER_BATCH} than NCHW in batches of 1,000")


def classifier_speedup(images: torch.Tensor) -> float:
    """How much faster the extractor's layout (channels-last, small batches) runs than the plain one."""
    model = DomainClassifier()
    model.load_state_dict(load_file(str(classifier_weights("mnist"))))
    x = classifier_input(images).contiguous()
    seconds = []
    for layout, batch in ((torch.contiguous_format, 1000), (torch.channels_last, CLASSIFIER_BATCH)):
        net = model.to(memory_format=layout).eval()
        run = lambda: [net.features(c.contiguous(memory_format=layout)) for c in x.split(batch)]  # noqa: B023
        with torch.inference_mode():
            run()
            start = time.perf_counter()
            run()
            seconds.append(time.perf_counter() - start)
    return seconds[0] / seconds[1]


if __name__ == "__main__":
    main()
