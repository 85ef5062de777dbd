"""Generator and discriminator architectures. Both map to/from images in [-1, 1], [N, C, H, W]."""

from __future__ import annotations

import math

import torch
from torch import nn

from gancli.config import CONV_ARCHS, TrainConfig


def _mlp(sizes: list[int], dropout: float = 0.0) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes[:-2], sizes[1:-1], strict=True):
        layers += [nn.Linear(n_in, n_out), nn.LeakyReLU(0.2)]
        if dropout:
            layers.append(nn.Dropout(dropout))
    return layers + [nn.Linear(sizes[-2], sizes[-1])]


def class_weights(y: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Labels as weights over the classes: class indices (int64 [N]) one-hot, weights (float [N, n_classes])
    as they are (`gan interpolate --between-classes` moves them from one class to another)."""
    return y if y.is_floating_point() else nn.functional.one_hot(y, n_classes).float()


def _check_labels(embed: nn.Module | None, y: torch.Tensor | None) -> None:
    if (embed is None) != (y is None):
        raise ValueError("a class-conditional network takes labels y, an unconditional one none")


class ClassInput(nn.Module):
    """A class-conditional generator's input: z and a learned embedding of its class y, concatenated
    ([z, embed(y)], one n_classes-wide row per class, as PyTorch-GAN's cgan); z alone for an
    unconditional one, which takes no labels. The embedding is a bias-free linear map of the one-hot
    class, so that a mixture of classes embeds as the mixture of their rows."""

    def __init__(self, n_classes: int):
        super().__init__()
        self.embed = nn.Linear(n_classes, n_classes, bias=False) if n_classes else None

    @property
    def width(self) -> int:
        return 0 if self.embed is None else self.embed.out_features

    def forward(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        _check_labels(self.embed, y)
        if self.embed is None:
            return z
        return torch.cat([z, self.embed(class_weights(y, self.embed.in_features).to(z.dtype))], dim=1)


class Projection(nn.Module):
    """The projection discriminator's output (Miyato and Koyama 2018): v(x, y) = head(phi(x)) + <embed(y), phi(x)>,
    phi(x) the features before the head; head(phi(x)) alone without classes. v stays one scalar per image, so
    every objective's loss, R1, the gradient penalty, calibration and rejection take it as they are. The
    embedding is a bias-free linear map of the one-hot class, so that --spectral-norm normalises it with
    D's other layers (the paper's SNEmbedID)."""

    def __init__(self, features: int, n_classes: int):
        super().__init__()
        self.n_classes = n_classes
        self.embed = nn.Linear(n_classes, features, bias=False) if n_classes else None

    def forward(self, net: nn.Sequential, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        _check_labels(self.embed, y)
        if self.embed is None:
            return net(x).squeeze(1)
        phi = net[:-1](x)
        return net[-1](phi).squeeze(1) + (self.embed(class_weights(y, self.n_classes).to(phi.dtype)) * phi).sum(1)


class MLPGenerator(nn.Module):
    """z [, class] -> hidden (LeakyReLU 0.2) -> C*H*W, tanh: the reference studies' 100-256-512-1024-784;
    a conditional one takes its class embedding in its first layer."""

    def __init__(self, z_dim: int, hidden: tuple[int, ...], image_shape: tuple[int, int, int], n_classes: int = 0):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.condition = ClassInput(n_classes)
        self.net = nn.Sequential(*_mlp([z_dim + self.condition.width, *hidden, math.prod(image_shape)]), nn.Tanh())

    def forward(self, z, y=None):
        return self.net(self.condition(z, y)).view(-1, *self.image_shape)


class MLPDiscriminator(nn.Module):
    """C*H*W -> hidden (LeakyReLU 0.2, optional dropout) -> 1 raw output v (projected on the class, if any)."""

    def __init__(self, hidden: tuple[int, ...], image_shape: tuple[int, int, int], dropout: float = 0.0, n_classes: int = 0):
        super().__init__()
        sizes = [math.prod(image_shape), *hidden, 1]
        self.net = nn.Sequential(*_mlp(sizes, dropout))
        self.projection = Projection(sizes[-2], n_classes)

    def forward(self, x, y=None):
        return self.projection(self.net, x.flatten(1), y)


def _dense(n_in: int, n_out: int) -> list[nn.Module]:
    return [nn.Linear(n_in, n_out), nn.BatchNorm1d(n_out), nn.ReLU()]


class DCGANGenerator(nn.Module):
    """z [-> hidden] -> (2w, H/4, W/4) -> (w, H/2, W/2) -> (C, H, W), batch norm and ReLU, tanh out.
    With `hidden` (infogan: 16w = 1024) a fully connected layer comes first: Lucic et al. 2018's
    InfoGAN generator, fc 1024 -> fc 7x7x128 -> deconv 64 -> deconv 1."""

    def __init__(self, z_dim: int, width: int, image_shape: tuple[int, int, int], hidden: int = 0, n_classes: int = 0):
        super().__init__()
        c, h, w = image_shape
        self.start = (2 * width, h // 4, w // 4)
        self.condition = ClassInput(n_classes)
        inputs = z_dim + self.condition.width
        first = _dense(inputs, hidden) if hidden else []
        self.project = nn.Sequential(*first, *_dense(hidden or inputs, math.prod(self.start)))
        self.net = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.ConvTranspose2d(width, c, 4, 2, 1), nn.Tanh(),
        )

    def forward(self, z, y=None):
        return self.net(self.project(self.condition(z, y)).view(-1, *self.start))


class DCGANDiscriminator(nn.Module):
    """Strided convolutions with LeakyReLU 0.2 and no batch norm, so it also serves as a WGAN-GP critic
    (and R1 and rejection see one image's score independent of its batch). With `hidden`, a fully
    connected layer before the output: Lucic et al.'s InfoGAN discriminator conv 64 -> conv 128 -> fc 1024,
    less its batch norm."""

    def __init__(self, width: int, image_shape: tuple[int, int, int], dropout: float = 0.0, hidden: int = 0,
                 n_classes: int = 0):
        super().__init__()
        c, h, w = image_shape
        features = 2 * width * (h // 4) * (w // 4)
        head = [nn.Linear(features, hidden), nn.LeakyReLU(0.2), nn.Dropout(dropout)] if hidden else []
        self.net = nn.Sequential(
            nn.Conv2d(c, width, 4, 2, 1), nn.LeakyReLU(0.2), nn.Dropout(dropout),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2), nn.Dropout(dropout),
            nn.Flatten(), *head, nn.Linear(hidden or features, 1),
        )
        self.projection = Projection(hidden or features, n_classes)

    def forward(self, x, y=None):
        return self.projection(self.net, x, y)


INFOGAN_HIDDEN = 16  # infogan's fully connected width, in conv_width's: 1024 at 64, Lucic et al.'s


def _infogan_hidden(config: TrainConfig, arch: str) -> int:
    return INFOGAN_HIDDEN * config.conv_width if arch == "infogan" else 0


def build_models(config: TrainConfig) -> tuple[nn.Module, nn.Module]:
    """G of `config.arch` and D of `config.discriminator_arch` (--d-arch, else the same)."""
    if config.arch in CONV_ARCHS:
        G = DCGANGenerator(config.z_dim, config.conv_width, config.image_shape, _infogan_hidden(config, config.arch),
                           config.n_classes)
    else:
        G = MLPGenerator(config.z_dim, config.g_hidden, config.image_shape, config.n_classes)
    if config.discriminator_arch in CONV_ARCHS:
        D = DCGANDiscriminator(config.conv_width, config.image_shape, config.d_dropout,
                               _infogan_hidden(config, config.discriminator_arch), config.n_classes)
    else:
        D = MLPDiscriminator(config.d_hidden, config.image_shape, config.d_dropout, config.n_classes)
    if config.spectral_norm:
        _normalise_spectra(D)
    return G, D


class SpectralNorm(nn.Module):
    """A Linear or Conv2d layer whose weight is divided by sigma, its largest singular value
    (Miyato et al. 2018), estimated as sigma = u^T W v with one power iteration per update of D
    (a training forward whose weights take gradients); u and v are buffers, so a checkpoint
    continues the iteration exactly.

    layer(x; W / sigma, b) = layer(x; W, 0) / sigma + b: dividing the output, a batch of values,
    costs less than dividing the weight (torch's parametrization), here 1.3x faster training."""

    def __init__(self, layer: nn.Linear | nn.Conv2d, init_iterations: int = 15):
        super().__init__()
        self.layer = layer
        rows, columns = layer.weight.flatten(1).shape
        self.register_buffer("u", nn.functional.normalize(torch.randn(rows), dim=0))
        self.register_buffer("v", nn.functional.normalize(torch.randn(columns), dim=0))
        for _ in range(init_iterations):
            self._power_iteration()

    @torch.no_grad()
    def _power_iteration(self) -> None:
        w = self.layer.weight.flatten(1)
        self.v.copy_(nn.functional.normalize(w.t() @ self.u, dim=0))
        self.u.copy_(nn.functional.normalize(w @ self.v, dim=0))

    def sigma(self) -> torch.Tensor:
        # copies of u and v: a second training forward in the same step (the gradient penalty's) updates the
        # buffers in place, which autograd would otherwise find changed when it backpropagates the first
        return self.u.clone() @ (self.layer.weight.flatten(1) @ self.v.clone())

    def forward(self, x):
        if self.training and self.layer.weight.requires_grad:  # once per D update, not in G's steps through D
            self._power_iteration()
        layer = self.layer
        if isinstance(layer, nn.Conv2d):
            out = layer._conv_forward(x, layer.weight, None)
            bias = None if layer.bias is None else layer.bias.view(1, -1, 1, 1)
        else:
            out, bias = nn.functional.linear(x, layer.weight), layer.bias
        out = out / self.sigma().to(out.dtype)
        return out if bias is None else out + bias.to(out.dtype)


def _normalise_spectra(net: nn.Module) -> None:
    for name, child in net.named_children():
        if isinstance(child, (nn.Linear, nn.Conv2d)):
            setattr(net, name, SpectralNorm(child))
        else:
            _normalise_spectra(child)


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    return images.float().div_(127.5).sub_(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8, rounding (the mapping the course template forgot)."""
    return images.add(1.0).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8)


def generate_images(G: nn.Module, z: torch.Tensor, device: torch.device | str, batch_size: int = 1000,
                    labels: torch.Tensor | None = None) -> torch.Tensor:
    """G's uint8 images of latents `z` (of classes `labels` for a conditional G), in eval mode (batch norm
    on its running statistics), on the CPU; G's training mode is left as it was."""
    was_training = G.training
    G.eval()
    chunks = labels.split(batch_size) if labels is not None else [None] * len(z.split(batch_size))
    try:
        with torch.inference_mode():
            return torch.cat([to_uint8(G(chunk.to(device), None if y is None else y.to(device)).float()).cpu()
                              for chunk, y in zip(z.split(batch_size), chunks, strict=True)])
    finally:
        G.train(was_training)


class DomainClassifier(nn.Module):
    """A small CNN for a 28x28 grey dataset (MNIST's digits, Fashion-MNIST's garments): `features`
    (128-d penultimate layer) for FID/PR, logits over its `classes` for class coverage."""

    def __init__(self, classes: int = 10):
        super().__init__()
        conv = lambda i, o: [nn.Conv2d(i, o, 3), nn.ReLU()]
        self.body = nn.Sequential(*conv(1, 32), *conv(32, 32), nn.MaxPool2d(2), *conv(32, 64), *conv(64, 64),
                                  nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 4 * 4, 128), nn.ReLU())
        self.head = nn.Linear(128, classes)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.body(x))
