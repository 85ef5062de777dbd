"""The f-divergence table of Nowozin, Cseke & Tomioka (2016), one row per divergence.

Each row holds functions of the discriminator's raw output v:
  activation  g_f(v), mapping R into the domain of the conjugate f*
  conjugate   f*(g_f(v)), composed in closed form so it stays finite in float32
  threshold   f'(1), the value of g_f(v) where the discriminator cannot tell P from Q
  log_ratio   log (f')^-1(g_f(v)), the density-ratio estimate log p_data/p_model
              (None where f' is not invertible)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F

Fn = Callable[[torch.Tensor], torch.Tensor]


class Divergence(NamedTuple):
    activation: Fn
    conjugate: Fn
    threshold: float
    log_ratio: Fn | None


class _LambertWOfExp(torch.autograd.Function):
    """w = W(exp(y)), the principal branch, i.e. the root of w + log w = y."""

    @staticmethod
    def forward(ctx, y):
        y64 = y.detach().double()
        # Newton on s = log w: h(s) = e^s + s - y is convex and increasing, so from this
        # start (exact asymptotics at both ends) it converges in a handful of steps.
        s = torch.where(y64 > 1, torch.log(y64.clamp(min=1) - torch.log(y64.clamp(min=1)) + 1e-12), y64 - 1)
        for _ in range(30):
            es = torch.exp(s)
            s = s - (es + s - y64) / (es + 1)
        w = torch.exp(s).to(y.dtype)
        ctx.save_for_backward(w)
        return w

    @staticmethod
    def backward(ctx, grad):
        (w,) = ctx.saved_tensors
        return grad * w / (1 + w)  # dw/dy from differentiating w + log w = y


def lambertw_exp(y: torch.Tensor) -> torch.Tensor:
    """W(e^y) without forming e^y, which overflows for large y."""
    return _LambertWOfExp.apply(y)


def _log_softplus(x: torch.Tensor) -> torch.Tensor:
    # softplus(x) ~ e^x below -15 (relative error < 2e-7); the clamp keeps the unused branch finite.
    return torch.where(x < -15, x, torch.log(F.softplus(x.clamp(min=-15))))


def _jeffrey_conjugate(v: torch.Tensor) -> torch.Tensor:
    w = lambertw_exp(1 - v)
    # f*(t) = W(e^{1-t}) + 1/W(e^{1-t}) + t - 2 at t = v, with 1/w = e^{w+v-1} (from w + log w = 1 - v):
    # autograd of 1/w would square it and overflow, this form's derivative stays finite.
    return w + torch.exp(w + v - 1) + v - 2


def _jeffrey_log_ratio(v: torch.Tensor) -> torch.Tensor:
    return lambertw_exp(1 - v) + v - 1  # log(1/w) = w - (1 - v), from w + log w = 1 - v


def _alpha_row(alpha: float) -> Divergence:
    """f(u) = (u^a - 1 - a(u - 1)) / (a(a - 1)); f*(t) = ((a - 1)t + 1)^(a/(a-1)) / a - 1/a.

    The domain of f* is t < 1/(1-a) for a < 1 (the paper's g_f) and t > 1/(1-a) for a > 1,
    so g_f is mirrored there. `base` is 1 + (a - 1) g_f(v), always positive.
    """
    a = alpha
    if a < 1:
        activation = lambda v: 1 / (1 - a) - F.softplus(-v)
        log_base = lambda v: math.log(1 - a) + _log_softplus(-v)
    else:
        activation = lambda v: 1 / (1 - a) + F.softplus(v)
        log_base = lambda v: math.log(a - 1) + _log_softplus(v)
    return Divergence(
        activation=activation,
        conjugate=lambda v: torch.exp(a / (a - 1) * log_base(v)) / a - 1 / a,
        threshold=0.0,
        log_ratio=lambda v: log_base(v) / (a - 1),  # (f')^-1(t) = (1 + (a - 1)t)^(1/(a-1))
    )


LOG2 = math.log(2.0)

TABLE: dict[str, Divergence] = {
    # f(u) = u log u; g_f = v; f*(t) = e^{t-1}
    "kl": Divergence(lambda v: v, lambda v: torch.exp(v - 1), 1.0, lambda v: v - 1),
    # f(u) = -log u; g_f = -e^{-v}; f*(t) = -1 - log(-t) = v - 1
    "reverse-kl": Divergence(lambda v: -torch.exp(-v), lambda v: v - 1, -1.0, lambda v: v),
    # f(u) = (u - 1)^2; g_f = v; f*(t) = t^2/4 + t; (f')^-1(t) = 1 + t/2, clipped at 0
    "pearson": Divergence(lambda v: v, lambda v: v * v / 4 + v, 0.0,
                          lambda v: torch.log(torch.clamp(1 + v / 2, min=0.0))),
    # f(u) = (1 - u)^2/u; g_f = 1 - e^v; f*(t) = 2 - 2 sqrt(1 - t) = 2 - 2 e^{v/2}
    "neyman": Divergence(lambda v: -torch.expm1(v), lambda v: 2 - 2 * torch.exp(v / 2), 0.0, lambda v: -v / 2),
    # f(u) = (sqrt u - 1)^2; g_f = 1 - e^v; f*(t) = t/(1 - t) = e^{-v} - 1
    "squared-hellinger": Divergence(lambda v: -torch.expm1(v), lambda v: torch.expm1(-v), 0.0, lambda v: -2 * v),
    # f(u) = (u - 1) log u; g_f = v; f* through the Lambert W function
    "jeffrey": Divergence(lambda v: v, _jeffrey_conjugate, 0.0, _jeffrey_log_ratio),
    # f(u) = u log u - (u + 1) log((u + 1)/2); g_f = log 2 - softplus(-v); f*(t) = -log(2 - e^t)
    "js": Divergence(lambda v: LOG2 - F.softplus(-v), lambda v: F.softplus(v) - LOG2, 0.0, lambda v: v),
    # f(u) = u log u - (u + 1) log(u + 1); g_f = -softplus(-v); f*(t) = -log(1 - e^t) = softplus(v)
    "gan": Divergence(lambda v: -F.softplus(-v), F.softplus, -LOG2, lambda v: v),
    # f(u) = |u - 1|/2; g_f = tanh(v)/2; f*(t) = t on |t| <= 1/2; f' is a step: no ratio
    "total-variation": Divergence(lambda v: 0.5 * torch.tanh(v), lambda v: 0.5 * torch.tanh(v), 0.0, None),
}


def divergence(name: str, alpha: float = 0.5) -> Divergence:
    return _alpha_row(alpha) if name == "alpha" else TABLE[name]
