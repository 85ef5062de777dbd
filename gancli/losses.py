"""Discriminator and generator losses for every objective, plus the regularisers."""

from __future__ import annotations

import torch

from gancli.config import TrainConfig
from gancli.divergences import Divergence, divergence
from gancli.errors import GancliError

WASSERSTEIN = ("wgan", "wgan-gp")


def objective_divergence(config: TrainConfig) -> Divergence | None:
    """The f-divergence row an objective optimises; vanilla GAN is the f-GAN "gan" row."""
    if config.objective in WASSERSTEIN:
        return None
    return divergence("gan" if config.objective == "vanilla" else config.div, config.alpha)


def d_loss(config: TrainConfig, v_real: torch.Tensor, v_fake: torch.Tensor) -> torch.Tensor:
    row = objective_divergence(config)
    if row is None:
        return v_fake.mean() - v_real.mean()  # -(E_P[D(x)] - E_Q[D(G(z))]), the critic's W estimate negated
    # -(E_P[g_f(v)] - E_Q[f*(g_f(v))]): maximise the variational lower bound on D_f(P||Q)
    return row.conjugate(v_fake).mean() - row.activation(v_real).mean()


def g_loss(config: TrainConfig, v_fake: torch.Tensor) -> torch.Tensor:
    row = objective_divergence(config)
    if row is None:
        return -v_fake.mean()  # -E_Q[D(G(z))]
    if config.g_loss == "minimax":
        return -row.conjugate(v_fake).mean()  # min_G E_P[g_f] - E_Q[f*(g_f(v))]: only the second term moves
    return -row.activation(v_fake).mean()  # the paper's alternative: max_G E_Q[g_f(v)]


def top_k(v_fake: torch.Tensor, k: int) -> torch.Tensor:
    """Top-k training (Sinha et al. 2020): the k of G's fakes that D scores highest (most real: every
    objective's activation g_f, and a critic, increase with v), so that G's update skips the fakes D finds
    worst, whose gradients point away from the data; all of them when k is the batch."""
    return v_fake if k >= len(v_fake) else v_fake.topk(k, sorted=False).values


def gradient_penalty(D, real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor,
                     labels: torch.Tensor | None = None) -> torch.Tensor:
    """E[(||grad_x D(x_hat)||_2 - 1)^2] on per-sample interpolates x_hat = eps x + (1 - eps) G(z) (of one
    class each, its label given to a conditional D)."""
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    v = D(x_hat) if labels is None else D(x_hat, labels)
    (grad,) = torch.autograd.grad(v.sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def zero_centred_penalty(v_real: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018) without its gamma/2: E_P ||grad_x D(x)||^2. `inputs` is the batch D saw,
    requiring grad, real images first (one per entry of v_real); the graph is kept, so the penalty trains D."""
    (grad,) = torch.autograd.grad(v_real.sum(), inputs, create_graph=True)
    return grad[: len(v_real)].flatten(1).pow(2).sum(1).mean()


def d_accuracy(config: TrainConfig, v_real: torch.Tensor, v_fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Shares of real and fake images the discriminator gets right: real when g_f(v) > f'(1), i.e. the
    density-ratio estimate exceeds 1 (vanilla: v > 0); a WGAN critic, which has no threshold, is
    judged against the median of its outputs on the batch, real and fake together."""
    row = objective_divergence(config)
    if row is None:
        median = torch.cat([v_real, v_fake]).median()
        return (v_real > median).float().mean(), (v_fake <= median).float().mean()
    return (row.activation(v_real) > row.threshold).float().mean(), (row.activation(v_fake) <= row.threshold).float().mean()


def mode_seeking(fake1: torch.Tensor, fake2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """MSGAN (Mao et al. 2019), as in the official code: 1 / (mean|G(z1)-G(z2)| / mean|z1-z2| + 1e-5)."""
    ratio = (fake1 - fake2).abs().mean() / (z1 - z2).abs().mean()
    return 1 / (ratio + 1e-5)


def log_density_ratio(config: TrainConfig, v: torch.Tensor) -> torch.Tensor:
    """log r, r = p_data/p_model as the discriminator estimates it (design note section 7)."""
    row = objective_divergence(config)
    if row is None or row.log_ratio is None:
        what = "a WGAN critic" if row is None else "the total-variation discriminator"
        raise GancliError(f"{what} estimates no density ratio, so a confidence threshold means nothing",
                          "calibrate it first (`gan calibrate`), or rank by score with --keep-top FRACTION")
    return row.log_ratio(v)
