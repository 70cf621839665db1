"""SIREN decoder: the paper's initialisation, derivatives, fitting, config round-trip."""

import math

import pytest
import torch

from omnifield.config import config_from_dict, config_to_dict
from omnifield.fields.sine_mlp import SineMLP, SirenConfig


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # tiny networks: threads only add overhead
    yield


def test_initialisation_bounds_follow_the_paper():
    torch.manual_seed(0)
    net = SirenConfig(width=64, n_hidden_layers=3, first_omega_0=30.0, hidden_omega_0=30.0).build(2, 1)
    first, *rest = net.layers
    assert first.weight.abs().max() <= 1.0 / 2 + 1e-7
    assert first.weight.abs().max() > 0.4  # drawn across the whole interval
    for layer in rest:
        bound = math.sqrt(6.0 / layer.in_features) / 30.0
        assert layer.weight.abs().max() <= bound + 1e-7
        assert layer.weight.abs().max() > 0.8 * bound


def test_hidden_pre_activations_stay_order_one_through_depth():
    # With the SIREN init, omega * (W h + b) has variance ~ 1 (weights) + omega^2/(3 n) (bias);
    # PyTorch's default init would give a standard deviation above 10 here.
    torch.manual_seed(0)
    net = SirenConfig(width=256, n_hidden_layers=5).build(1, 1)
    h = torch.rand(4096, 1) * 2 - 1
    with torch.no_grad():
        for i, (layer, omega) in enumerate(zip(net.layers[:-1], net.omegas)):
            pre = omega * layer(h)
            if i > 0:
                expected = math.sqrt(1.0 + omega**2 / (3 * layer.in_features))
                assert abs(pre.std().item() - expected) < 0.25 * expected
            h = torch.sin(pre)


def test_forward_matches_a_plain_implementation():
    torch.manual_seed(1)
    net = SirenConfig(width=16, n_hidden_layers=2, first_omega_0=20.0, hidden_omega_0=10.0).build(3, 2)
    x = torch.rand(7, 3)
    l0, l1, l2 = net.layers
    expected = l2(torch.sin(10.0 * l1(torch.sin(20.0 * l0(x)))))
    torch.testing.assert_close(net(x), expected)
    assert net(x.reshape(7, 1, 3)).shape == (7, 1, 2)


def test_first_and_second_derivatives_are_exact_in_float64():
    torch.manual_seed(0)
    net = SirenConfig(width=8, n_hidden_layers=2).build(2, 1).double()
    x = (torch.rand(5, 2, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: net(p), (x,))
    assert torch.autograd.gradgradcheck(lambda p: net(p), (x,))


def test_fits_a_high_frequency_signal():
    torch.manual_seed(0)
    net = SirenConfig(width=32, n_hidden_layers=2).build(1, 1)
    x = torch.linspace(-1, 1, 256)[:, None]
    y = torch.sin(8 * math.pi * x)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(300):
        loss = (net(x) - y).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 1e-3


def test_config_round_trip_and_validation():
    cfg = SirenConfig(width=12, n_hidden_layers=2, first_omega_0=15.0)
    data = config_to_dict(cfg)
    assert data["type"] == "siren"
    assert config_from_dict(data) == cfg
    with pytest.raises(ValueError):
        SirenConfig(n_hidden_layers=0).build(1, 1)
    with pytest.raises(ValueError):
        SirenConfig(first_omega_0=0.0).build(1, 1)


def test_siren_and_sine_mlp_configs_written_before_the_merge_still_load():
    old = [{"type": "siren", "width": 8, "n_hidden_layers": 2, "first_omega_0": 30.0, "hidden_omega_0": 30.0},
           {"type": "sine_mlp", "width": 8, "n_hidden_layers": 2, "first_omega": 2.0}]
    keys = {f"layers.{i}.{p}" for i in range(3) for p in ("weight", "bias")}
    for data in old:
        net = config_from_dict(data).build(3, 1)
        assert type(net) is SineMLP and set(net.state_dict()) == keys  # old checkpoints' tensor names
    relu_net = config_from_dict(old[1]).build(3, 1)
    h = torch.randn(4, 3)
    l0, l1, l2 = relu_net.layers
    torch.testing.assert_close(relu_net(h), l2(torch.relu(l1(torch.sin(2.0 * l0(h))))))
