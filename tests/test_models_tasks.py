"""The direction, energy and track losses and the uncertainty calibration of the GNN heads."""

import math

import numpy as np
import pytest
import torch

from nurec.models.tasks import (
    TaskConfig,
    containment_radius_deg,
    fit_kappa_scale,
    kappa_of,
    log_cosh,
    task_losses,
    vmf3d_nll,
)


def closed_form_nll(kappa: float, cos_theta: float) -> float:
    """-log of kappa / (4 pi sinh kappa) * exp(kappa cos theta), straight from the definition."""
    return -(math.log(kappa) - math.log(4 * math.pi * math.sinh(kappa)) + kappa * cos_theta)


@pytest.mark.parametrize("kappa", [1e-3, 0.5, 2.5, 10.0, 300.0])
@pytest.mark.parametrize("cos_theta", [-1.0, 0.3, 1.0])
def test_vmf_nll_equals_closed_form(kappa, cos_theta):
    k = torch.tensor([kappa], dtype=torch.float64)
    value = vmf3d_nll(k, k * cos_theta).item()
    assert value == pytest.approx(closed_form_nll(kappa, cos_theta), rel=1e-9, abs=1e-9)


def test_vmf_nll_at_large_kappa_matches_asymptotic_form():
    # For kappa >> 1: -log p = log(2 pi) - log(kappa) + kappa (1 - cos theta), exactly up to exp(-2 kappa).
    kappa, cos_theta = 1e5, 1 - 1e-6
    k = torch.tensor([kappa], dtype=torch.float64)
    expected = math.log(2 * math.pi) - math.log(kappa) + kappa * (1 - cos_theta)
    assert vmf3d_nll(k, k * cos_theta).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("kappa", [1e-8, 0.1, 3.0, 30.0])
def test_vmf_density_integrates_to_one_on_the_sphere(kappa):
    cos_theta = np.linspace(-1, 1, 200_001)
    k = torch.tensor(kappa, dtype=torch.float64)
    density = torch.exp(-vmf3d_nll(k, k * torch.from_numpy(cos_theta))).numpy()
    assert 2 * math.pi * np.trapezoid(density, cos_theta) == pytest.approx(1.0, rel=1e-6)


@pytest.mark.parametrize("norm", [0.0, 1e-9, 1e-3, 1.0, 1e5])
def test_direction_loss_has_finite_gradients_from_kappa_zero_to_1e5(norm):
    vector = torch.tensor([[0.6, 0.0, 0.8]], dtype=torch.float32) * norm
    outputs = torch.cat([vector, torch.zeros(1, 2)], dim=1).requires_grad_(True)
    targets = torch.tensor([[0.0, 0.6, 0.8, 3.0, 1.0]])
    loss = task_losses(outputs, targets, TaskConfig())["direction"]
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.all(torch.isfinite(outputs.grad))


def test_log_cosh_is_stable_for_large_residuals():
    x = torch.tensor([0.0, 1e-3, 3.0, 1e4, -1e4], dtype=torch.float64)
    big = 1e4 - math.log(2)
    expected = torch.tensor([0.0, math.log(math.cosh(1e-3)), math.log(math.cosh(3.0)), big, big], dtype=torch.float64)
    assert torch.allclose(log_cosh(x), expected, rtol=1e-12, atol=1e-15)


def sample_vmf_angles_deg(kappa, n: int, rng: np.random.Generator) -> np.ndarray:
    """Return angles [deg] from the mean direction of vMF(kappa) samples (inverse CDF of cos theta)."""
    u = rng.random(n)
    cos_theta = 1.0 + np.log(u + (1.0 - u) * np.exp(-2.0 * kappa)) / kappa
    return np.degrees(np.arccos(np.clip(cos_theta, -1, 1)))


@pytest.mark.parametrize("kappa", [0.01, 1.0, 100.0, 1e4])
def test_containment_radius_holds_68_percent_of_vmf_samples(kappa):
    angles = sample_vmf_angles_deg(kappa, 200_000, np.random.default_rng(1))
    coverage = np.mean(angles <= containment_radius_deg(np.array([kappa]))[0])
    assert coverage == pytest.approx(0.68, abs=0.005)


def test_containment_radius_at_kappa_zero_is_isotropic_value():
    # Isotropic: P(angle <= r) = (1 - cos r) / 2 = 0.68  ->  r = arccos(-0.36).
    assert containment_radius_deg(np.array([0.0]))[0] == pytest.approx(math.degrees(math.acos(-0.36)), rel=1e-6)


def test_kappa_scale_calibrates_overconfident_kappa_to_68_percent():
    rng = np.random.default_rng(2)
    true_kappa = 10 ** rng.uniform(0, 3, 20_000)
    errors = sample_vmf_angles_deg(true_kappa, len(true_kappa), rng)
    claimed = 4.0 * true_kappa  # four times too confident
    assert np.mean(errors <= containment_radius_deg(claimed)) < 0.5
    scale = fit_kappa_scale(claimed, errors)
    assert scale == pytest.approx(0.25, rel=0.1)
    assert np.mean(errors <= containment_radius_deg(scale * claimed)) == pytest.approx(0.68, abs=0.01)


def test_kappa_is_norm_of_direction_output():
    assert kappa_of(torch.tensor([[3.0, 4.0, 0.0]])).item() == pytest.approx(5.0)
