"""Train the MNIST feature extractor shipped as gancli/weights/mnist_classifier.safetensors.

    GANCLI_DATA=../shared/data/mnist python scripts/train_mnist_classifier.py [--epochs 4]

Prints the test accuracy; the README records it.
"""

import argparse
from pathlib import Path

import torch
from safetensors.torch import save_file

from gancli.data import load_dataset, load_labels
from gancli.models import MNISTClassifier, to_unit_range

OUT = Path(__file__).resolve().parent.parent / "gancli" / "weights" / "mnist_classifier.safetensors"


def accuracy(model, images, labels) -> float:
    model.eval()
    with torch.no_grad():
        predicted = torch.cat([model(to_unit_range(x)).argmax(1) for x in images.split(1000)])
    return (predicted == labels).float().mean().item()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    torch.manual_seed(0)
    images, labels = load_dataset("mnist", "train"), load_labels("mnist", "train")
    test_images, test_labels = load_dataset("mnist", "test"), load_labels("mnist", "test")
    model = MNISTClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=args.epochs * (len(images) // 128))
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(images))
        for i in range(len(images) // 128):
            idx = order[i * 128:(i + 1) * 128]
            x = to_unit_range(images[idx])
            shift = torch.randint(-2, 3, (2,))  # small random translations
            x = torch.roll(x, shifts=(int(shift[0]), int(shift[1])), dims=(2, 3))
            loss = torch.nn.functional.cross_entropy(model(x), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        print(f"epoch {epoch + 1}: test accuracy {accuracy(model, test_images, test_labels):.4f}", flush=True)
    OUT.parent.mkdir(exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(OUT),
              metadata={"test_accuracy": f"{accuracy(model, test_images, test_labels):.4f}"})
    print(f"saved {OUT}")


if __name__ == "__main__":
    main()
