import numpy as np
import pytest
import torch

from gancli.config import CLASSIFIER_CLASSES
from gancli.errors import GancliError
from gancli.metrics import (
    class_coverage,
    density_coverage,
    evaluate,
    frechet_distance,
    kernel_inception_distance,
    precision_recall,
    statistics,
)

rng = np.random.default_rng(0)


def test_fid_of_a_set_with_itself_is_zero():
    x = rng.normal(size=(500, 16))
    assert frechet_distance(*statistics(x), *statistics(x)) == pytest.approx(0.0, abs=1e-6)


def test_fid_with_equal_covariances_is_the_squared_mean_distance():
    sigma = np.diag(rng.uniform(0.5, 2.0, 8))
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    assert frechet_distance(mu1, sigma, mu2, sigma) == pytest.approx(float(np.sum((mu1 - mu2) ** 2)), rel=1e-9)


def test_fid_agrees_with_an_eigenvalue_computation():
    """Tr((S1 S2)^(1/2)) is the sum of the square roots of the eigenvalues of S1 S2 (real and >= 0, as
    S1 S2 is similar to S1^(1/2) S2 S1^(1/2)): an independent route from the code's matrix square root."""
    a, b = rng.normal(size=(400, 12)), rng.normal(size=(400, 12)) @ rng.normal(size=(12, 12)) + 1
    mu1, mu2 = a.mean(axis=0), b.mean(axis=0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    eigenvalues = np.linalg.eigvals(s1 @ s2)
    assert np.abs(eigenvalues.imag).max() < 1e-9 and eigenvalues.real.min() > 0
    reference = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(eigenvalues.real).sum()
    assert frechet_distance(*statistics(a), *statistics(b)) == pytest.approx(reference, rel=1e-9)


def test_precision_and_recall_are_one_on_identical_sets():
    x = torch.randn(300, 8)
    assert precision_recall(x, x.clone(), 3) == (1.0, 1.0)
    assert density_coverage(x, x.clone(), 3)[1] == 1.0


def test_tight_fakes_inside_wide_reals_have_high_precision_and_low_recall():
    torch.manual_seed(0)
    real = torch.randn(1000, 4) * 3
    fake = torch.randn(1000, 4) * 0.3
    precision, recall = precision_recall(real, fake, 3)
    assert precision > 0.95 and recall < 0.2
    precision, recall = precision_recall(fake, real, 3)  # the reverse: wide fakes around tight reals
    assert precision < 0.2 and recall > 0.95
    assert density_coverage(real, fake, 3)[1] < 0.2  # few real balls hold a fake


def test_kid_is_unbiased_near_zero_for_one_distribution_and_positive_across_two():
    same = kernel_inception_distance(rng.normal(size=(1000, 32)), rng.normal(size=(1000, 32)), subsets=20, subset_size=200)
    shifted = kernel_inception_distance(rng.normal(size=(1000, 32)), rng.normal(size=(1000, 32)) + 0.5, subsets=20, subset_size=200)
    assert abs(same[0]) < 3 * same[1] + 1e-3
    assert shifted[0] > 10 * abs(same[0]) and shifted[0] > 0


def test_class_coverage_spots_mode_collapse_and_names_the_missing_classes():
    digits, garments = CLASSIFIER_CLASSES["mnist"], CLASSIFIER_CLASSES["fashion-mnist"]
    balanced = class_coverage(np.arange(1000) % 10, digits)
    collapsed = class_coverage(np.array([1] * 990 + [7] * 10), garments)
    assert balanced["classes_present"] == 10 and balanced["class_kl"] == pytest.approx(0.0, abs=1e-12)
    assert balanced["classes_missing"] == [] and balanced["class_names"] == list(digits)
    assert collapsed["classes_present"] == 2 and collapsed["class_kl"] > 2.0 and collapsed["classes_total"] == 10
    assert collapsed["classes_missing"] == ["T-shirt/top", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Bag",
                                            "Ankle boot"]


def test_bad_features_are_user_errors():
    x = rng.normal(size=(10, 4))
    with pytest.raises(GancliError, match="at least 2"):
        evaluate(x, x[:1])
    y = x.copy()
    y[0, 0] = np.nan
    with pytest.raises(GancliError, match="NaN"):
        evaluate(x, y)
