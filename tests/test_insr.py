"""INSR stepper: rules, one step against the exact answer, warm start, save/resume, problem stages."""

import json
import math

import pytest
import torch
from torch import nn

from omnifield.config import config_from_dict, config_to_dict
from omnifield.errors import OmnifieldError
from omnifield.fields.frequency import FrequencyConfig
from omnifield.fields.mlp import MLPConfig
from omnifield.fields.sine_mlp import SirenConfig
from omnifield.pde.insr import (
    AdvectionProblem,
    ElasticityProblem,
    InsrStepper,
    SpatialFieldConfig,
    StageContext,
    StepperConfig,
    TaylorGreenProblem,
    step_residual,
)
from omnifield.pde.insr.rules import spatial_gradient
from omnifield.pde.insr.taylor_green import divergence, laplacian, taylor_green_velocity
from omnifield.pde.reference.fem_elasticity import neo_hookean_energy_density


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # tiny networks: threads only add overhead
    yield


class Analytic(nn.Module):
    """A 'field' given by a formula, to test stage losses without training."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def _advection_residual(rule, dt, a=0.7):
    x = torch.linspace(0, 2 * math.pi, 200, dtype=torch.float64)[:, None].requires_grad_(True)
    u_old, u_new = torch.sin(x), torch.sin(x - a * dt)  # the exact solution one step apart
    r = step_residual(rule, u_new, u_old, lambda u: -a * spatial_gradient(u, x)[:, :, 0], dt)
    return r.abs().max().item()


def test_midpoint_rule_is_second_order_and_implicit_euler_first_order():
    for rule, order in (("midpoint", 3), ("implicit_euler", 2)):  # local truncation errors
        ratio = _advection_residual(rule, 0.1) / _advection_residual(rule, 0.05)
        assert abs(math.log2(ratio) - order) < 0.1, (rule, ratio)
    assert _advection_residual("midpoint", 0.1) < 0.1 * _advection_residual("implicit_euler", 0.1)


@pytest.fixture(scope="module")
def initialised_advection(tmp_path_factory):
    """An advection stepper fitted to the initial pulse, saved once for the tests below."""
    torch.set_num_threads(1)
    problem = AdvectionProblem(width=0.2, center=-0.3, dt=0.4)  # one step shifts the pulse by half its width
    cfg = StepperConfig(lr=1e-3, max_iters=400, init_iters=600, n_samples=512)
    stepper = InsrStepper(problem, cfg, SirenConfig(width=32, n_hidden_layers=2))
    stepper.initialise()
    path = tmp_path_factory.mktemp("insr") / "init.json"
    stepper.save(path)
    return path


def test_one_advection_step_matches_the_exact_solution(initialised_advection):
    stepper = InsrStepper.load(initialised_advection)
    stepper.step()
    x = torch.linspace(-1, 1, 501)[:, None]
    with torch.no_grad():
        u = stepper.problem.solution(stepper.fields, x)
    exact = stepper.problem.exact(0.4, x)
    standing_still = (stepper.problem.exact(0.0, x) - exact).norm() / exact.norm()
    err = (u - exact).norm() / exact.norm()
    assert err < 0.05
    assert err < 0.1 * standing_still
    assert stepper.time == pytest.approx(0.4) and stepper.step_index == 1


def test_warm_start_needs_fewer_iterations_than_a_fresh_network(initialised_advection):
    iters, losses = {}, {}
    for warm in (True, False):
        s = InsrStepper.load(initialised_advection)
        s.problem.dt, s.cfg.lr = 0.05, 1e-4
        s.cfg.warm_start, s.cfg.abs_tol, s.cfg.rel_tol = warm, 2e-6, 0.0  # iterations to reach a fixed loss
        stage = s.step()["stages"]["advect"]
        iters[warm], losses[warm] = stage["iters"], stage["loss"]
    assert losses[True] < 2e-6
    assert iters[True] < 0.5 * iters[False]


def test_save_and_resume_continue_exactly(tmp_path):
    problem = ElasticityProblem(dt=0.01)  # two previous states: the resumed run must restore both
    cfg = StepperConfig(rule="implicit_euler", lr=1e-3, max_iters=15, min_iters=15, init_iters=20, n_samples=64)
    a = InsrStepper(problem, cfg, SirenConfig(width=8, n_hidden_layers=1))
    a.run(2, progress=False)
    a.save(tmp_path / "state.json")
    a.step()
    b = InsrStepper.load(tmp_path / "state.json")
    assert b.step_index == 2 and len(b.history) == 2 and len(b.log) == 3
    b.step()
    assert b.step_index == a.step_index == 3
    for (ka, va), (kb, vb) in zip(a.fields["u"].state_dict().items(), b.fields["u"].state_dict().items()):
        assert ka == kb
        torch.testing.assert_close(va, vb, rtol=0, atol=0)


def test_loading_bad_checkpoints_names_the_file(tmp_path):
    with pytest.raises(OmnifieldError, match="not found"):
        InsrStepper.load(tmp_path / "missing.json")
    stepper = InsrStepper(AdvectionProblem(), StepperConfig(init_iters=2), SirenConfig(width=4, n_hidden_layers=1))
    stepper.initialise()
    stepper.save(tmp_path / "s.json")
    (tmp_path / "s.json").write_text("{not json")
    with pytest.raises(OmnifieldError, match="s.json"):
        InsrStepper.load(tmp_path / "s.json")
    (tmp_path / "s.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(OmnifieldError, match="not an INSR checkpoint"):
        InsrStepper.load(tmp_path / "s.json")


def test_step_before_initialise_and_unsupported_rule_are_errors():
    stepper = InsrStepper(AdvectionProblem(), StepperConfig(), SirenConfig(width=4, n_hidden_layers=1))
    with pytest.raises(OmnifieldError, match="initialise"):
        stepper.step()
    with pytest.raises(OmnifieldError, match="implicit_euler"):
        InsrStepper(ElasticityProblem(), StepperConfig(rule="midpoint"))


def test_any_field_backend_can_be_the_unknown():
    problem = AdvectionProblem()
    stepper = InsrStepper(problem, StepperConfig(max_iters=5, init_iters=5, n_samples=32), MLPConfig(width=16, activation="tanh"))
    stepper.field_cfgs["u"] = SpatialFieldConfig(encoding=FrequencyConfig(n_frequencies=4), decoder=MLPConfig(width=16))
    stepper.fields["u"] = stepper.field_cfgs["u"].build()
    stepper.run(1, progress=False)
    assert torch.isfinite(problem.solution(stepper.fields, torch.zeros(3, 1))).all()


def test_field_config_round_trips_and_periodic_fields_are_periodic():
    cfg = TaylorGreenProblem().field_configs(SirenConfig(width=8, n_hidden_layers=1))["u"]
    assert config_from_dict(config_to_dict(cfg)) == cfg
    field = cfg.build()
    x = torch.rand(10, 2) * 2 * math.pi
    torch.testing.assert_close(field(x), field(x + 2 * math.pi), atol=1e-4, rtol=0)
    assert config_from_dict(config_to_dict(TaylorGreenProblem(viscosity=0.1))) == TaylorGreenProblem(viscosity=0.1)


def test_divergence_and_laplacian_of_analytic_fields():
    x = (torch.rand(50, 2, dtype=torch.float64) * 6).requires_grad_(True)
    v = torch.stack([x[:, 0] ** 2 * x[:, 1], torch.sin(x[:, 1])], dim=-1)
    torch.testing.assert_close(divergence(v, x), 2 * x[:, 0] * x[:, 1] + torch.cos(x[:, 1]))
    lap = laplacian(v, x)
    torch.testing.assert_close(lap[:, 0], 2 * x[:, 1])
    torch.testing.assert_close(lap[:, 1], -torch.sin(x[:, 1]))


def test_taylor_green_pressure_and_projection_stages_recover_the_divergence_free_part():
    problem = TaylorGreenProblem()
    phi = lambda x: (torch.sin(x[:, 0]) * torch.sin(2 * x[:, 1]))[:, None]  # noqa: E731
    grad_phi = lambda x: torch.stack([torch.cos(x[:, 0]) * torch.sin(2 * x[:, 1]), 2 * torch.sin(x[:, 0]) * torch.cos(2 * x[:, 1])], -1)  # noqa: E731
    u_star = Analytic(lambda x: taylor_green_velocity(x, 0.0, 0.0) + grad_phi(x))
    x = problem.sample(256, torch.Generator().manual_seed(0)).double().requires_grad_(True)
    ctx = StageContext(snapshot={"u": u_star, "p": Analytic(phi)}, history=[], dt=0.1, rule="midpoint", time=0.0)
    stages = {s.name: s for s in problem.stages()}
    assert stages["pressure"].loss(Analytic(phi), ctx, x).item() < 1e-20
    assert stages["pressure"].loss(Analytic(lambda x: 0 * phi(x)), ctx, x).item() > 1.0
    exact = Analytic(lambda x: taylor_green_velocity(x, 0.0, 0.0))
    assert stages["project"].loss(exact, ctx, x).item() < 1e-20


def test_elasticity_clamp_and_energy_at_rest():
    problem = ElasticityProblem(gravity=0.0)
    field = problem.field_configs(SirenConfig(width=8, n_hidden_layers=1))["u"].build()
    clamp = torch.stack([torch.zeros(5), torch.linspace(0, problem.height, 5)], -1)
    assert problem.displacement(field, clamp).abs().max() == 0
    zero = Analytic(lambda x: 0 * x)
    ctx = StageContext(snapshot={"u": zero}, history=[{"u": zero}], dt=0.01, rule="implicit_euler", time=0.0)
    x = problem.sample(64, torch.Generator().manual_seed(0)).requires_grad_(True)
    assert problem.stages()[0].loss(zero, ctx, x).item() == pytest.approx(0.0, abs=1e-6)
    # Neo-Hookean: zero at rest, invariant to rotations, positive under stretch
    c, s = math.cos(0.3), math.sin(0.3)
    rotation = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    stretch = torch.tensor([[1.2, 0.1], [0.0, 0.9]], dtype=torch.float64)
    psi = lambda F: neo_hookean_energy_density(F, 2.0, 3.0)  # noqa: E731
    assert psi(torch.eye(2, dtype=torch.float64)).item() == pytest.approx(0.0, abs=1e-12)
    assert psi(rotation).item() == pytest.approx(0.0, abs=1e-12)
    assert psi(rotation @ stretch).item() == pytest.approx(psi(stretch).item()) and psi(stretch).item() > 0


def test_stratified_samples_fill_every_cell_of_the_box():
    problem = TaylorGreenProblem()
    x = problem.sample(110, torch.Generator().manual_seed(0))  # 10 x 10 strata + 10 uniform points
    assert x.shape == (110, 2) and bool(((x >= 0) & (x <= 2 * math.pi)).all())
    cells = torch.floor(x[:100] / (2 * math.pi / 10)).long()
    assert len(set(map(tuple, cells.tolist()))) == 100
