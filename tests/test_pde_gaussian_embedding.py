"""GaussianEmbedding: the PIG formula, float64 gradcheck/gradgradcheck, config registration."""

import pytest
import torch

from omnifield.config import config_from_dict, config_to_dict
from omnifield.fields import GaussianEmbedding, GaussianEmbeddingConfig


def _embedding(covariance, n_neighbors=0):
    torch.manual_seed(0)
    cfg = GaussianEmbeddingConfig(n_gaussians=6, n_features=3, init_sigma=0.3, covariance=covariance, n_neighbors=n_neighbors)
    e = GaussianEmbedding(2, cfg)
    e = e.double()
    with torch.no_grad():
        e.means.uniform_()
        e.log_precision.uniform_(0.5, 1.5)
        if covariance == "full":
            e.off_diagonal.normal_()
    return e


@pytest.mark.parametrize("covariance", ["diagonal", "full"])
def test_matches_plain_sum_of_gaussians(covariance):
    e = _embedding(covariance)
    x = torch.rand(5, 2, dtype=torch.float64)
    a = e.precision_factor()
    expected = torch.zeros(5, 3, dtype=torch.float64)
    for n in range(5):
        for i in range(6):
            d = x[n] - e.means[i]
            q = d @ (a[i].T @ a[i]) @ d
            expected[n] += e.features[i] * torch.exp(-0.5 * q)
    torch.testing.assert_close(e(x), expected.detach())


@pytest.mark.parametrize("covariance", ["diagonal", "full"])
def test_nearest_gaussians_equal_the_dense_sum_of_those_gaussians(covariance):
    dense, nearest = _embedding(covariance), _embedding(covariance, n_neighbors=2)
    x = torch.rand(9, 2, dtype=torch.float64)
    w = dense.weights(x)
    top = torch.topk(w, 2, dim=1).indices
    kept = torch.zeros_like(w).scatter(1, top, w.gather(1, top))
    torch.testing.assert_close(nearest(x), kept @ dense.features.detach())


@pytest.mark.parametrize("covariance, n_neighbors", [("diagonal", 0), ("full", 0), ("diagonal", 3), ("full", 3)])
def test_gradcheck_and_gradgradcheck_float64(covariance, n_neighbors):
    e = _embedding(covariance, n_neighbors)
    x = torch.rand(4, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(e, (x,))
    assert torch.autograd.gradgradcheck(e, (x,))
    params = dict(e.named_parameters())

    def of_params(*values):
        return torch.func.functional_call(e, dict(zip(params, values)), (x.detach(),))

    assert torch.autograd.gradcheck(of_params, tuple(p.detach().clone().requires_grad_() for p in params.values()))


def test_config_is_registered_and_round_trips():
    cfg = GaussianEmbeddingConfig(n_gaussians=9, covariance="full")
    data = config_to_dict(cfg)
    assert data["type"] == "gaussian_embedding"
    assert config_from_dict(data) == cfg
    e = cfg.build(3)
    assert (e.n_input_dims, e.n_output_dims) == (3, 4)
    assert e.means.shape == (9, 3)


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="covariance"):
        GaussianEmbeddingConfig(covariance="spherical").build(2)
    with pytest.raises(ValueError, match="n_gaussians"):
        GaussianEmbeddingConfig(n_gaussians=0).build(2)
