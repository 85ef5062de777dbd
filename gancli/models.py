"""Generator and discriminator architectures. Both map to/from images in [-1, 1], [N, C, H, W]."""

from __future__ import annotations

import math

import torch
from torch import nn

from gancli.config import TrainConfig


def _mlp(sizes: list[int], dropout: float = 0.0) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes[:-2], sizes[1:-1], strict=True):
        layers += [nn.Linear(n_in, n_out), nn.LeakyReLU(0.2)]
        if dropout:
            layers.append(nn.Dropout(dropout))
    return layers + [nn.Linear(sizes[-2], sizes[-1])]


class MLPGenerator(nn.Module):
    """z -> hidden (LeakyReLU 0.2) -> C*H*W, tanh: the reference studies' 100-256-512-1024-784."""

    def __init__(self, z_dim: int, hidden: tuple[int, ...], image_shape: tuple[int, int, int]):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.net = nn.Sequential(*_mlp([z_dim, *hidden, math.prod(image_shape)]), nn.Tanh())

    def forward(self, z):
        return self.net(z).view(-1, *self.image_shape)


class MLPDiscriminator(nn.Module):
    """C*H*W -> hidden (LeakyReLU 0.2, optional dropout) -> 1 raw output v."""

    def __init__(self, hidden: tuple[int, ...], image_shape: tuple[int, int, int], dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(*_mlp([math.prod(image_shape), *hidden, 1], dropout))

    def forward(self, x):
        return self.net(x.flatten(1)).squeeze(1)


class DCGANGenerator(nn.Module):
    """z -> (2w, H/4, W/4) -> (w, H/2, W/2) -> (C, H, W), batch norm and ReLU, tanh out."""

    def __init__(self, z_dim: int, width: int, image_shape: tuple[int, int, int]):
        super().__init__()
        c, h, w = image_shape
        self.start = (2 * width, h // 4, w // 4)
        self.project = nn.Sequential(nn.Linear(z_dim, math.prod(self.start)), nn.BatchNorm1d(math.prod(self.start)), nn.ReLU())
        self.net = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.ConvTranspose2d(width, c, 4, 2, 1), nn.Tanh(),
        )

    def forward(self, z):
        return self.net(self.project(z).view(-1, *self.start))


class DCGANDiscriminator(nn.Module):
    """Strided convolutions with LeakyReLU 0.2 and no batch norm, so it also serves as a WGAN-GP critic."""

    def __init__(self, width: int, image_shape: tuple[int, int, int], dropout: float = 0.0):
        super().__init__()
        c, h, w = image_shape
        self.net = nn.Sequential(
            nn.Conv2d(c, width, 4, 2, 1), nn.LeakyReLU(0.2), nn.Dropout(dropout),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2), nn.Dropout(dropout),
            nn.Flatten(), nn.Linear(2 * width * (h // 4) * (w // 4), 1),
        )

    def forward(self, x):
        return self.net(x).squeeze(1)


def build_models(config: TrainConfig) -> tuple[nn.Module, nn.Module]:
    if config.arch == "dcgan":
        G = DCGANGenerator(config.z_dim, config.conv_width, config.image_shape)
        D = DCGANDiscriminator(config.conv_width, config.image_shape, config.d_dropout)
    else:
        G = MLPGenerator(config.z_dim, config.g_hidden, config.image_shape)
        D = MLPDiscriminator(config.d_hidden, config.image_shape, config.d_dropout)
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
        return self.u @ (self.layer.weight.flatten(1) @ self.v)

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


def generate_images(G: nn.Module, z: torch.Tensor, device: torch.device | str, batch_size: int = 1000) -> torch.Tensor:
    """G's uint8 images of latents `z`, in eval mode (batch norm on its running statistics), on the CPU;
    G's training mode is left as it was."""
    was_training = G.training
    G.eval()
    try:
        with torch.inference_mode():
            return torch.cat([to_uint8(G(chunk.to(device)).float()).cpu() for chunk in z.split(batch_size)])
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
