"""tiny-cuda-nn selection: one decision in ``backend``, equivalent configs, clear errors; CUDA parity."""

import math
import sys
import types
from dataclasses import replace

import pytest
import torch

from omnifield import backend
from omnifield.errors import OmnifieldError
from omnifield.fields.hashgrid import HashGrid, HashGridConfig
from omnifield.fields.mlp import MLP, MLPConfig
from omnifield.fields.registry import build_field, field_config
from omnifield.io.checkpoint import load_module_state, module_state


@pytest.fixture
def fake_tcnn(monkeypatch):
    """A stand-in ``tinycudann`` module on a machine that claims CUDA: records the configs it gets."""
    made = []

    class _Module(torch.nn.Module):
        def __init__(self, n_in, n_out, config):
            super().__init__()
            self.n_out, self.config = n_out, config
            self.params = torch.nn.Parameter(torch.zeros(8))
            made.append(config)

        def forward(self, x):
            return torch.zeros(x.shape[0], self.n_out, dtype=torch.float16) + self.params.sum()

    fake = types.ModuleType("tinycudann")
    fake.Encoding = lambda n_in, config: _Module(n_in, config["n_levels"] * config["n_features_per_level"], config)
    fake.Network = _Module
    monkeypatch.setitem(sys.modules, "tinycudann", fake)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    backend.has_module.cache_clear()
    yield made
    backend.has_module.cache_clear()


def test_without_cuda_auto_is_ours_and_explicit_tcnn_is_a_clear_error():
    if torch.cuda.is_available() and backend.has_module("tinycudann"):
        pytest.skip("tiny-cuda-nn is usable here")
    assert isinstance(HashGridConfig().build(3), HashGrid)
    assert isinstance(MLPConfig().build(4, 2), MLP)
    with pytest.raises(OmnifieldError, match="tinycudann"):
        HashGridConfig(implementation="tcnn").build(3)
    with pytest.raises(ValueError, match="implementation must be one of"):
        MLPConfig(implementation="cutlass").build(4, 2)


def test_auto_picks_tcnn_with_equivalent_settings(fake_tcnn):
    cfg = HashGridConfig(n_levels=16, n_features_per_level=2, log2_hashmap_size=19, base_resolution=16,
                         max_resolution=2048)
    enc = cfg.build(3)
    assert type(enc).__name__ == "TcnnHashGrid" and enc.n_output_dims == 32
    conf = fake_tcnn[-1]
    assert conf["otype"] == "HashGrid" and conf["log2_hashmap_size"] == 19 and conf["base_resolution"] == 16
    # the same geometric growth: base * scale^(L-1) reaches the finest resolution
    assert math.isclose(16 * conf["per_level_scale"] ** 15, 2048, rel_tol=1e-9)
    out = enc(torch.rand(5, 3))
    assert out.shape == (5, 32) and out.dtype == torch.float32

    mlp = MLPConfig(width=64, n_hidden_layers=2).build(32, 16)
    assert type(mlp).__name__ == "TcnnMLP"
    assert fake_tcnn[-1] == {"otype": "FullyFusedMLP", "activation": "ReLU", "output_activation": "None",
                             "n_neurons": 64, "n_hidden_layers": 2}
    assert mlp(torch.rand(2, 3, 32)).shape == (2, 3, 16)
    assert MLPConfig(width=256).build(8, 1) is not None and fake_tcnn[-1]["otype"] == "CutlassMLP"
    # no equivalent: auto stays ours, an explicit request says why not
    assert isinstance(MLPConfig(activation="silu").build(8, 1), MLP)
    with pytest.raises(ValueError, match="no MLP with activation 'silu'"):
        MLPConfig(activation="silu", implementation="tcnn").build(8, 1)
    # opting out, and the places that need our modules (CAM modulation, PDE second derivatives)
    assert isinstance(HashGridConfig(implementation="omnifield").build(3), HashGrid)
    cam = build_field(field_config("hashgrid_cam"))
    assert isinstance(cam.density_decoder.mlp, MLP)


def test_modules_built_for_the_cpu_stay_ours_even_with_tcnn(fake_tcnn):
    with backend.build_on(torch.device("cpu")):
        assert isinstance(HashGridConfig().build(3), HashGrid)
        assert isinstance(MLPConfig().build(4, 2), MLP)
        with backend.build_on(torch.device("cuda", 0)):  # the innermost device decides
            assert type(HashGridConfig().build(3)).__name__ == "TcnnHashGrid"
    assert type(HashGridConfig().build(3)).__name__ == "TcnnHashGrid"


def test_checkpoint_of_the_other_implementation_names_the_cause(fake_tcnn):
    tcnn_field = build_field(field_config("hashgrid"))
    state = module_state("field", tcnn_field)
    ours = build_field(replace(field_config("hashgrid"), encoding=HashGridConfig(implementation="omnifield")))
    with pytest.raises(OmnifieldError, match="tiny-cuda-nn"):
        load_module_state("field", ours, state, "run/checkpoint.safetensors")


@pytest.mark.cuda
@pytest.mark.skipif(not (torch.cuda.is_available() and backend.has_module("tinycudann")),
                    reason="needs CUDA and tinycudann")
def test_tcnn_hash_grid_fits_as_well_as_ours_on_cuda():
    """Parity of behaviour (the layouts differ): both fit the same 2-D signal to a similar error."""
    torch.manual_seed(0)
    x = torch.rand(1 << 16, 2, device="cuda")
    y = torch.sin(12 * x[:, :1]) * torch.cos(9 * x[:, 1:])
    errors = {}
    for impl in ("omnifield", "tcnn"):
        enc = HashGridConfig(n_levels=8, log2_hashmap_size=14, max_resolution=256, implementation=impl).build(2).cuda()
        dec = MLP(enc.n_output_dims, 1).cuda()
        opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=1e-2)
        for _ in range(300):
            loss = torch.nn.functional.mse_loss(dec(enc(x)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        errors[impl] = float(loss)
    assert errors["tcnn"] < 2 * errors["omnifield"] + 1e-4 and errors["omnifield"] < 2 * errors["tcnn"] + 1e-4
