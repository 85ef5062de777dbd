"""Sample-quality metrics as pure functions of feature arrays [N, D] (design note section 6)."""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
import torch

from gancli.errors import GancliError


def statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance in float64."""
    features = np.asarray(features, dtype=np.float64)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """FID = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)).

    As pytorch-fid: a singular product gets eps on the diagonals; the square root's imaginary
    part (numerical noise) is dropped only when it is small, never silently when it is large.
    """
    diff = mu1 - mu2
    with warnings.catch_warnings():  # a singular product is handled below, not worth a warning
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise GancliError(f"FID: the covariance square root has an imaginary part of {np.abs(covmean.imag).max():.3g}",
                              "too few images for the feature size; use more images")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def pairwise_distances(a: torch.Tensor, b: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """Euclidean distances [len(a), len(b)], float32, in row chunks."""
    return torch.cat([torch.cdist(x, b) for x in a.split(chunk)])


def knn_radii(features: torch.Tensor, k: int) -> torch.Tensor:
    """Distance of each point to its k-th nearest other point."""
    d = pairwise_distances(features, features)
    return d.kthvalue(k + 1, dim=1).values  # the 1st is the point itself


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """Kynkaanniemi et al. 2019: precision = share of fakes inside some real k-NN ball, recall the reverse."""
    real_radii, fake_radii = knn_radii(real, k), knn_radii(fake, k)
    d = pairwise_distances(fake, real)
    precision = (d <= real_radii.unsqueeze(0)).any(dim=1).float().mean().item()
    recall = (d.T <= fake_radii.unsqueeze(0)).any(dim=1).float().mean().item()
    return precision, recall


def density_coverage(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """Naeem et al. 2020: density = mean count of real k-NN balls holding each fake, / k;
    coverage = share of real balls that hold at least one fake."""
    radii = knn_radii(real, k)
    inside = pairwise_distances(fake, real) <= radii.unsqueeze(0)
    return (inside.sum().item() / (k * len(fake)), inside.any(dim=0).float().mean().item())


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """k(x, y) = (x.y / d + 1)^3 in float64; the dot products in float32 (the cost) are exact enough."""
    g = (x @ y.T).double() / x.shape[1] + 1
    return g * g * g


def kernel_inception_distance(real: np.ndarray, fake: np.ndarray, subsets: int = 100, subset_size: int = 1000,
                              seed: int = 0) -> tuple[float, float]:
    """KID (Binkowski et al. 2018): unbiased MMD^2 with the cubic polynomial kernel, mean and std over subsets:

    MMD^2 = sum_{i!=j} k(x_i, x_j) / m(m-1) + sum_{i!=j} k(y_i, y_j) / m(m-1) - 2 sum_{i,j} k(x_i, y_j) / m^2
    """
    real, fake = torch.from_numpy(np.asarray(real, np.float32)), torch.from_numpy(np.asarray(fake, np.float32))
    m = min(subset_size, len(real), len(fake))
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(subsets):
        x = real[rng.choice(len(real), m, replace=False)]
        y = fake[rng.choice(len(fake), m, replace=False)]
        kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
        off_diagonal = lambda k: (k.sum() - k.trace()).item() / (m * (m - 1))
        values.append(off_diagonal(kxx) + off_diagonal(kyy) - 2 * kxy.mean().item())
    return float(np.mean(values)), float(np.std(values))


def class_coverage(predicted: np.ndarray, classes: tuple[str, ...]) -> dict:
    """Classes present (at least 1% of the images each), those missing by name, and
    KL(predicted-class histogram || uniform) in nats, sum_c p_c log(C p_c), over the C `classes`."""
    counts = np.bincount(np.asarray(predicted), minlength=len(classes)).astype(np.float64)
    p = counts / counts.sum()
    kl = float(np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1) * len(classes)), 0.0)))
    return {"classes_present": int((p >= 0.01).sum()), "classes_total": len(classes),
            "classes_missing": [name for name, share in zip(classes, p, strict=True) if share < 0.01],
            "class_kl": kl, "class_names": list(classes), "class_histogram": counts.astype(int).tolist()}


def class_accuracy(predicted, asked) -> float:
    """The share of images the classifier assigns to the class they were drawn for: mean(predicted == asked)."""
    return float((np.asarray(predicted) == np.asarray(asked)).mean())


def evaluate(real: np.ndarray, fake: np.ndarray, k: int = 3, kid_subsets: int = 100) -> dict:
    """Every metric of `gan score` on one pair of feature sets (KID over `kid_subsets` subsets; 0 leaves it out)."""
    for name, features in (("generated", fake), ("reference", real)):
        if len(features) < 2:
            raise GancliError(f"{len(features)} {name} images: the metrics need at least 2")
        if not np.isfinite(features).all():
            raise GancliError(f"the {name} features hold NaN or inf", "check the images (all blank?) and the weights")
    fid = frechet_distance(*statistics(fake), *statistics(real))
    real_t, fake_t = torch.from_numpy(np.asarray(real, np.float32)), torch.from_numpy(np.asarray(fake, np.float32))
    k = min(k, len(real) - 1, len(fake) - 1)
    precision, recall = precision_recall(real_t, fake_t, k)
    density, coverage = density_coverage(real_t, fake_t, k)
    scores = {"fid": fid, "precision": precision, "recall": recall, "density": density, "coverage": coverage, "k": k}
    if kid_subsets > 0:
        scores["kid_mean"], scores["kid_std"] = kernel_inception_distance(real, fake, subsets=kid_subsets)
    return scores
