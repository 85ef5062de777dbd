"""Train the classifier gancli ships for a dataset: its features score `--features DATASET` (and
`auto`, and the per-epoch evaluation), its predictions give class coverage.

    GANCLI_DATA=../shared/data python scripts/train_classifier.py mnist           # 4 epochs
    GANCLI_DATA=../shared/data python scripts/train_classifier.py fashion-mnist   # 15 epochs, flips

Trains on the official train split, prints the accuracy on the official test split after each
epoch and writes gancli/weights/<dataset>_classifier.safetensors with that accuracy and the
command in its metadata; the README records it.
"""

import argparse
import sys

import torch
from safetensors.torch import save_file

from gancli.config import CLASSIFIER_CLASSES
from gancli.data import load_dataset, load_labels
from gancli.features import classifier_weights
from gancli.models import DomainClassifier, to_unit_range

# dataset -> (epochs, horizontal flips): mirrored garments are garments of the same class, mirrored digits are not
RECIPES = {"mnist": (4, False), "fashion-mnist": (15, True)}
BATCH = 128


def accuracy(model, images, labels) -> float:
    model.eval()
    with torch.no_grad():
        predicted = torch.cat([model(to_unit_range(x)).argmax(1) for x in images.split(1000)])
    return (predicted == labels).float().mean().item()


def augment(x: torch.Tensor, flips: bool) -> torch.Tensor:
    shift = torch.randint(-2, 3, (2,))  # small random translations
    x = torch.roll(x, shifts=(int(shift[0]), int(shift[1])), dims=(2, 3))
    if flips:
        mirrored = torch.rand(len(x)) < 0.5
        x = torch.where(mirrored[:, None, None, None], x.flip(3), x)
    return x


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=sorted(CLASSIFIER_CLASSES))
    parser.add_argument("--epochs", type=int, help="default: 4 for mnist, 15 for fashion-mnist")
    args = parser.parse_args()
    default_epochs, flips = RECIPES[args.dataset]
    epochs = args.epochs or default_epochs
    torch.manual_seed(0)
    images, labels = load_dataset(args.dataset, "train"), load_labels(args.dataset, "train")
    test_images, test_labels = load_dataset(args.dataset, "test"), load_labels(args.dataset, "test")
    model = DomainClassifier(len(CLASSIFIER_CLASSES[args.dataset]))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    steps = len(images) // BATCH
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=epochs * steps)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(images))
        for i in range(steps):
            idx = order[i * BATCH:(i + 1) * BATCH]
            loss = torch.nn.functional.cross_entropy(model(augment(to_unit_range(images[idx]), flips)), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        print(f"epoch {epoch + 1}/{epochs}: test accuracy {accuracy(model, test_images, test_labels):.4f}", flush=True)
    out = classifier_weights(args.dataset)
    out.parent.mkdir(exist_ok=True)
    test_accuracy = accuracy(model, test_images, test_labels)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out),
              metadata={"test_accuracy": f"{test_accuracy:.4f}", "dataset": args.dataset,
                        "command": " ".join(["python", *sys.argv]), "torch": torch.__version__})
    print(f"saved {out}: test accuracy {test_accuracy:.4f}")


if __name__ == "__main__":
    main()
