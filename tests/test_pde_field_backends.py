"""Tri-plane, NeuRBF and CAM as PDE unknowns: exact higher derivatives, solution error, CLI names."""

import copy
import json
from dataclasses import replace

import pytest
import torch

from omnifield import cli as main_cli
from omnifield.fields.box import BoxMapping
from omnifield.fields.cam import CAMConfig
from omnifield.fields.neurbf import NeuRBFConfig
from omnifield.fields.triplane import TriPlaneConfig
from omnifield.pde.field import ENCODINGS, PDEField, UnknownConfig, encoding_lr, parameter_groups
from omnifield.pde.solvers import solve
from omnifield.pde.solvers.settings import SolverSettings

NEW = ("triplane", "neurbf", "cam")


pytestmark = pytest.mark.usefixtures("one_thread")


TINY = {  # gradcheck sizes: a few hundred parameters
    "triplane": TriPlaneConfig(resolutions=(3, 5), n_features=2, aggregation="concat"),
    "neurbf": NeuRBFConfig(n_bases=6, n_neighbors=6, n_channels=3, max_candidates=6),
    "cam": CAMConfig(resolution=2, normalization="none"),
}


def _field(encoding, d, tiny=False):
    torch.manual_seed(0)
    cfg = UnknownConfig(encoding=encoding, encoding_config=TINY[encoding] if tiny else None, width=6, n_hidden_layers=1)
    field = PDEField((-1.0,) * d, (1.0,) * d, 1, cfg)
    with torch.no_grad():  # CAM starts with zero grids: give every grid a random value to test
        for p in field.grid_parameters():
            p.add_(0.3 * torch.randn_like(p))
    return field


def _laplacian(field, x):
    u = field(x)[:, 0]
    (du,) = torch.autograd.grad(u.sum(), x, create_graph=True)
    return sum(torch.autograd.grad(du[:, i].sum(), x, create_graph=True)[0][:, i] for i in range(x.shape[1]))


def _grid_parameter(field):
    return field.grid_parameters()[0]


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("encoding", NEW)
def test_derivatives_to_third_order_match_finite_differences(encoding, d):
    field = _field(encoding, d, tiny=True).double()
    x = (torch.rand(5, d, dtype=torch.float64) * 1.6 - 0.8).requires_grad_(True)
    # second derivatives in x (gradgradcheck), third in x and the Laplacian's gradient in the grid (gradcheck)
    assert torch.autograd.gradgradcheck(lambda p: field(p), (x,), eps=1e-6, atol=1e-5)
    assert torch.autograd.gradcheck(lambda p: _laplacian(field, p), (x,), eps=1e-6, atol=1e-5)
    grid = _grid_parameter(field)
    original = grid.detach().clone()

    def laplacian_of_grid(g):
        with torch.no_grad():
            grid.copy_(original)
        params = {n: (g if p is grid else p) for n, p in field.named_parameters()}
        u = lambda q: torch.func.functional_call(field, params, (q,))  # noqa: E731
        xx = x.detach().requires_grad_(True)
        out = u(xx)[:, 0]
        (du,) = torch.autograd.grad(out.sum(), xx, create_graph=True)
        return sum(torch.autograd.grad(du[:, i].sum(), xx, create_graph=True)[0][:, i] for i in range(d))

    probe = original.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(laplacian_of_grid, (probe,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("encoding", NEW)
def test_float32_path_gives_the_float64_residual_and_its_gradient(encoding):
    """float32 runs the native ``grid_lookup`` kernel where it builds (it differentiates its twin beyond the
    first backward); the float64 copy runs the twin throughout: the Laplacian and its gradient agree."""
    field32 = _field(encoding, 2)
    field64 = copy.deepcopy(field32).double()
    x = torch.rand(64, 2) * 1.8 - 0.9
    out = []
    for field, pts in ((field32, x.clone()), (field64, x.double())):
        pts.requires_grad_(True)
        lap = _laplacian(field, pts)
        (g,) = torch.autograd.grad(lap.pow(2).sum(), _grid_parameter(field))
        out.append((lap.detach().double(), g.double()))
    (lap32, g32), (lap64, g64) = out
    assert torch.allclose(lap32, lap64, rtol=1e-3, atol=1e-3 * lap64.abs().max())
    assert torch.allclose(g32, g64, rtol=1e-3, atol=1e-3 * g64.abs().max())


def test_triplane_in_2d_is_one_plane_and_in_space_time_three():
    assert len(_field("triplane", 2).encoding.pairs) == 1
    assert len(_field("triplane", 3).encoding.pairs) == 3


def test_grids_train_at_the_encoding_rate():
    field = _field("cam", 2)
    groups = parameter_groups(field, 1e-3, encoding_lr("cam", 1e-3))
    assert [g["lr"] for g in groups] == [1e-3, 1e-2]
    assert groups[1]["params"] == [field.decoder.grids]
    assert sum(p.numel() for g in groups for p in g["params"]) == sum(p.numel() for p in field.parameters())
    triplane = _field("triplane", 3)
    assert {id(p) for p in parameter_groups(triplane, 1e-3, 1e-2)[1]["params"]} == {id(p) for p in triplane.encoding.parameters()}


def test_box_mapping_maps_the_box_to_the_unit_cube():
    box = BoxMapping.from_bounds((-1.0, 0.0, 3.0, 2.0))
    x = torch.tensor([[-1.0, 0.0], [3.0, 2.0], [1.0, 1.0]], dtype=torch.float64)
    assert torch.equal(box(x), torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.5, 0.5]], dtype=torch.float64))
    with pytest.raises(ValueError):
        BoxMapping((0.0,), (0.0,))


# Poisson on the L-shape (exact sin(pi x) sin(pi y)), 150 Adam steps + 40 L-BFGS iterations on 128 points, one
# thread. Measured rel. L2 (seed 0): tri-plane 0.48, NeuRBF 0.21, CAM 0.61 (the plain tanh MLP: 0.84), each 10-56 s
# at load 13-16 on 2 cores; an untrained field is at ~1. The bounds leave ~25 % for other BLAS/OpenMP builds;
# 300 Adam + 200 L-BFGS on 512 points reach 0.30 / 0.091 / 0.26 (MLP 0.12).
SOLVE = SolverSettings(width=16, depth=2, steps=150, lbfgs_steps=40, n_interior=128, n_condition=48, lr=5e-3,
                       lr_final=5e-4)
BOUNDS = {"triplane": 0.6, "neurbf": 0.27, "cam": 0.75}


@pytest.mark.parametrize("encoding", NEW)
def test_pinn_solves_poisson_with_each_backend(tmp_path, encoding):
    metrics = solve("poisson_lshape", "pinn", replace(SOLVE, field=encoding), tmp_path, quiet=True)
    assert metrics["rel_l2"] < BOUNDS[encoding]


def test_cli_lists_the_backends_and_rejects_an_unknown_one_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main_cli.main(["pde", "solve", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for name in ENCODINGS:
        assert name in help_text
    code = main_cli.main(["pde", "solve", "poisson_lshape", "--method", "voxels", "--out", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--method" in err and "triplane" in err


def test_insr_advection_with_neurbf_follows_the_exact_pulse(tmp_path, capsys):
    """One step of dt = 0.4 moves the pulse (width 0.2) by 0.1; the NeuRBF state must land on the exact one."""
    args = ["pde", "solve", "advection", "--solver", "insr", "--method", "neurbf", "--insr-lr", "1e-3",
            "--insr-time-steps", "1", "--insr-dt", "0.4", "--insr-param", "width=0.2", "--insr-param", "center=-0.3",
            "--steps", "100", "--insr-init-iters", "200", "--insr-samples", "128", "--insr-width", "16",
            "--threads", "1", "--quiet", "--out", str(tmp_path)]
    assert main_cli.main(args) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    x = torch.linspace(-1.0, 1.0, 401, dtype=torch.float64)
    pulse = torch.exp(-((x + 0.3) ** 2) / (2 * 0.2**2))
    moved = torch.exp(-((x + 0.3 - 0.1) ** 2) / (2 * 0.2**2))
    standing_still = float((pulse - moved).norm() / moved.norm())  # ~0.35
    assert metrics["rel_l2"] < 0.05 < standing_still
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["fields"]["u"]["encoding"]["type"] == "neurbf"


def test_insr_rejects_an_unknown_field_in_one_line(tmp_path, capsys):
    code = main_cli.main(["pde", "solve", "advection", "--solver", "insr", "--method", "voxels", "--quiet",
                          "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--method" in err and "neurbf" in err


def test_insr_field_is_the_old_name_of_method(capsys):
    from omnifield.cli import build_parser

    args = build_parser().parse_args(["pde", "solve", "advection", "--solver", "insr", "--insr-field", "triplane"])
    assert args.field == "triplane"
    assert "--insr-field is the old name of --method" in capsys.readouterr().err
