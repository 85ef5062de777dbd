"""The f-divergence table against the paper's literal f, f* and g_f, computed independently in float64."""

import math

import numpy as np
import pytest
import torch
from scipy.special import lambertw

from gancli.config import DIVERGENCES
from gancli.divergences import TABLE, divergence, lambertw_exp

sp = lambda x: torch.log1p(torch.exp(x))
t64 = lambda x: torch.as_tensor(x, dtype=torch.float64)


def _w(x):
    return t64(lambertw(x.numpy()).real)


def _alpha_reference(a):
    if a < 1:
        g, g_inv = (lambda v: 1 / (1 - a) - sp(-v)), (lambda t: -torch.log(torch.expm1(1 / (1 - a) - t)))
    else:
        g, g_inv = (lambda v: 1 / (1 - a) + sp(v)), (lambda t: torch.log(torch.expm1(t - 1 / (1 - a))))
    return dict(f=lambda u: (u**a - 1 - a * (u - 1)) / (a * (a - 1)),
                fstar=lambda t: ((a - 1) * t + 1) ** (a / (a - 1)) / a - 1 / a, g=g, g_inv=g_inv)


# (f, f*, g_f, g_f^-1) straight from Nowozin et al. (2016), tables 1 and 2.
REFERENCE = {
    "kl": dict(f=lambda u: u * torch.log(u), fstar=lambda t: torch.exp(t - 1), g=lambda v: v, g_inv=lambda t: t),
    "reverse-kl": dict(f=lambda u: -torch.log(u), fstar=lambda t: -1 - torch.log(-t),
                       g=lambda v: -torch.exp(-v), g_inv=lambda t: -torch.log(-t)),
    "pearson": dict(f=lambda u: (u - 1) ** 2, fstar=lambda t: t**2 / 4 + t, g=lambda v: v, g_inv=lambda t: t),
    "neyman": dict(f=lambda u: (1 - u) ** 2 / u, fstar=lambda t: 2 - 2 * torch.sqrt(1 - t),
                   g=lambda v: 1 - torch.exp(v), g_inv=lambda t: torch.log(1 - t)),
    "squared-hellinger": dict(f=lambda u: (torch.sqrt(u) - 1) ** 2, fstar=lambda t: t / (1 - t),
                              g=lambda v: 1 - torch.exp(v), g_inv=lambda t: torch.log(1 - t)),
    "jeffrey": dict(f=lambda u: (u - 1) * torch.log(u),
                    fstar=lambda t: _w(torch.exp(1 - t)) + 1 / _w(torch.exp(1 - t)) + t - 2,
                    g=lambda v: v, g_inv=lambda t: t),
    "js": dict(f=lambda u: u * torch.log(u) - (u + 1) * torch.log((u + 1) / 2),
               fstar=lambda t: -torch.log(2 - torch.exp(t)), g=lambda v: math.log(2) - sp(-v),
               g_inv=lambda t: -torch.log(2 * torch.exp(-t) - 1)),
    "gan": dict(f=lambda u: u * torch.log(u) - (u + 1) * torch.log(u + 1), fstar=lambda t: -torch.log(1 - torch.exp(t)),
                g=lambda v: -sp(-v), g_inv=lambda t: -torch.log(torch.exp(-t) - 1)),
    "total-variation": dict(f=lambda u: 0.5 * torch.abs(u - 1), fstar=lambda t: t, g=lambda v: 0.5 * torch.tanh(v),
                            g_inv=lambda t: torch.atanh(torch.clamp(2 * t, -1 + 1e-12, 1 - 1e-12))),
}
CASES = [(name, None) for name in TABLE] + [("alpha", 0.5), ("alpha", 1.5), ("alpha", -0.5)]


def _rows(name, alpha):
    ref = _alpha_reference(alpha) if name == "alpha" else REFERENCE[name]
    return ref, divergence(name, alpha if alpha is not None else 0.5)


def test_table_has_every_divergence_of_the_paper():
    assert set(TABLE) | {"alpha"} == set(DIVERGENCES)


@pytest.mark.parametrize("name, alpha", CASES)
def test_composed_conjugate_matches_the_literal_formula(name, alpha):
    ref, row = _rows(name, alpha)
    v = torch.linspace(-6, 6, 241, dtype=torch.float64)
    torch.testing.assert_close(row.activation(v), ref["g"](v), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(row.conjugate(v), ref["fstar"](ref["g"](v)), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("name, alpha", CASES)
def test_finite_in_float32_with_finite_gradients(name, alpha):
    _, row = _rows(name, alpha)
    v = torch.linspace(-50, 50, 1001).requires_grad_(True)
    outputs = [row.activation(v), row.conjugate(v)] + ([row.log_ratio(v)] if row.log_ratio and name != "pearson" else [])
    for out in outputs:
        assert out.dtype == torch.float32 and torch.isfinite(out).all()
        (grad,) = torch.autograd.grad(out.sum(), v)
        assert torch.isfinite(grad).all()


@pytest.mark.parametrize("name, alpha", CASES)
def test_threshold_is_f_prime_at_one(name, alpha):
    ref, row = _rows(name, alpha)
    u = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    (f_prime,) = torch.autograd.grad(ref["f"](u), u)
    assert row.threshold == pytest.approx(f_prime.item(), abs=1e-12)


@pytest.mark.parametrize("name, alpha", CASES)
def test_variational_bound_is_tight_at_the_optimal_critic(name, alpha):
    """At T* = f'(p/q): E_P[T*] - E_Q[f*(T*)] = D_f(P||Q) = sum q f(p/q); and log_ratio recovers p/q."""
    ref, row = _rows(name, alpha)
    p = t64([0.1, 0.2, 0.3, 0.4])
    q = t64([0.25, 0.25, 0.3, 0.2])
    ratio = (p / q).requires_grad_(True)
    (t_star,) = torch.autograd.grad(ref["f"](ratio).sum(), ratio)
    divergence_value = (q * ref["f"](p / q)).sum()
    v_star = ref["g_inv"](t_star)
    bound = (p * row.activation(v_star)).sum() - (q * row.conjugate(v_star)).sum()
    assert bound.item() == pytest.approx(divergence_value.item(), rel=1e-6, abs=1e-9)
    if row.log_ratio is not None:
        torch.testing.assert_close(torch.exp(row.log_ratio(v_star)), p / q)


def test_lambertw_of_exp_matches_scipy_and_its_gradient():
    y = torch.linspace(-30, 30, 601, dtype=torch.float64)
    expected = t64(lambertw(np.exp(y.numpy())).real)
    torch.testing.assert_close(lambertw_exp(y), expected, rtol=1e-12, atol=1e-300)
    big = torch.tensor([200.0, 1000.0], dtype=torch.float64)
    w = lambertw_exp(big)
    torch.testing.assert_close(w + torch.log(w), big)  # beyond exp's range: w + log w = y still holds
    assert torch.autograd.gradcheck(lambertw_exp, (torch.linspace(-5, 5, 11, dtype=torch.float64).requires_grad_(),))
