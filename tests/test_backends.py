"""Tri-plane, NeuRBF and CAM: shapes, gradients, gradcheck/gradgradcheck and plain references."""

import copy
import itertools

import pytest
import torch
import torch.nn.functional as F

from omnifield.backend import resolve_device
from omnifield.config import config_from_dict, config_to_dict
from omnifield.errors import OmnifieldError
from omnifield.fields import build_field
from omnifield.fields import mlp as mlp_module
from omnifield.fields.cam import CAMConfig
from omnifield.fields.grid_lookup import grid_lookup
from omnifield.fields.hashgrid import HashGridConfig
from omnifield.fields.kmeans import weighted_kmeans
from omnifield.fields.mlp import MLPConfig, _mlp_layers
from omnifield.fields.neurbf import NeuRBFConfig, build_candidate_lists, k_nearest_centers
from omnifield.fields.radiance import RadianceFieldConfig
from omnifield.fields.sine_mlp import SineMLPConfig
from omnifield.fields.triplane import TriPlaneConfig
from tests._native import native_or_skip

BATCH_SHAPES = [(1,), (7,), (2, 5), (2, 3, 4)]

ENCODINGS = [
    (TriPlaneConfig(resolutions=(4, 8), n_features=3, aggregation="sum"), 3),
    (TriPlaneConfig(resolutions=(4, 8), n_features=3, aggregation="product"), 3),
    (TriPlaneConfig(resolutions=(4,), n_features=3, aggregation="concat"), 3),
    (TriPlaneConfig(resolutions=(5,), n_features=2, aggregation="product"), 4),
    (TriPlaneConfig(resolutions=(6, 9), n_features=2, aggregation="sum"), 2),
    (NeuRBFConfig(n_bases=32, n_neighbors=4, n_channels=6), 2),
    (NeuRBFConfig(n_bases=48, n_neighbors=8, n_channels=5), 3),
    (NeuRBFConfig(n_bases=32, n_neighbors=4, n_channels=4, grid=HashGridConfig(n_levels=2, log2_hashmap_size=8, base_resolution=4, max_resolution=8)), 3),
]
IDS = [f"{type(c).__name__}-{getattr(c, 'aggregation', 'rbf')}-{d}d-{i}" for i, (c, d) in enumerate(ENCODINGS)]


def _randomize(module):
    """Move parameters off their initial values so that no term is trivially zero or one."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return module


@pytest.mark.parametrize(("cfg", "dims"), ENCODINGS, ids=IDS)
@pytest.mark.parametrize("batch", BATCH_SHAPES)
def test_encoding_shapes_and_gradients(cfg, dims, batch):
    enc = cfg.build(dims)
    x = torch.rand(*batch, dims, requires_grad=True)
    out = enc(x)
    assert out.shape == (*batch, enc.n_output_dims)
    upstream = torch.randn_like(out)
    grads = torch.autograd.grad((out * upstream).sum(), [x, *enc.parameters()], allow_unused=True)
    assert grads[0].shape == x.shape and torch.isfinite(grads[0]).all()
    assert all(g is not None and torch.isfinite(g).all() for g in grads[1:])
    assert any(g.abs().sum() > 0 for g in grads[1:])
    # the flattened batch gives the same features
    flat = enc(x.detach().reshape(-1, dims)).reshape(out.shape)
    torch.testing.assert_close(flat, out.detach())


@pytest.mark.parametrize(("cfg", "dims"), ENCODINGS, ids=IDS)
def test_encoding_gradcheck_and_gradgradcheck_float64(cfg, dims):
    enc = _randomize(cfg.build(dims)).double()
    x = (0.05 + 0.9 * torch.rand(5, dims, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(enc, (x,), eps=1e-6, atol=1e-5)
    assert torch.autograd.gradgradcheck(enc, (x,), eps=1e-6, atol=1e-5)


def test_grid_lookup_matches_grid_sample_2d_and_1d():
    grids = torch.randn(3, 7, 7, 5, dtype=torch.float64)
    coords = torch.rand(11, 3, 2, dtype=torch.float64)
    ours = grid_lookup(grids, coords)
    for p in range(3):
        # grid_sample: input [1, F, H, W], grid (x -> W axis, y -> H axis) in [-1, 1]
        ref = F.grid_sample(grids[p].permute(2, 0, 1)[None], (coords[None, :, p, None, [1, 0]] * 2 - 1),
                            mode="bilinear", align_corners=True)[0, :, :, 0].T
        torch.testing.assert_close(ours[:, p], ref)
    line = torch.randn(1, 9, 4, dtype=torch.float64)
    t = torch.rand(6, 1, 1, dtype=torch.float64)
    pos = t[:, 0, 0] * 8
    i0 = pos.floor().long().clamp(max=7)
    w = (pos - i0)[:, None]
    torch.testing.assert_close(grid_lookup(line, t)[:, 0], (1 - w) * line[0, i0] + w * line[0, i0 + 1])


@pytest.mark.parametrize("aggregation", ["sum", "product", "concat"])
@pytest.mark.parametrize("dims", [3, 4])
def test_triplane_matches_plain_reference(aggregation, dims):
    enc = _randomize(TriPlaneConfig(resolutions=(5, 8), n_features=3, aggregation=aggregation).build(dims)).double()
    x = torch.rand(13, dims, dtype=torch.float64)
    outs = []
    for planes in enc.planes:
        feats = []
        for p, (i, j) in enumerate(itertools.combinations(range(dims), 2)):
            img = planes[p].permute(2, 0, 1)[None]  # axis 1 of the plane follows coordinate i
            g = torch.stack([x[:, j], x[:, i]], dim=-1)[None, :, None] * 2 - 1
            feats.append(F.grid_sample(img, g, align_corners=True)[0, :, :, 0].T)
        stacked = torch.stack(feats, dim=1)
        outs.append({"sum": stacked.sum(1), "product": stacked.prod(1), "concat": stacked.flatten(1)}[aggregation])
    torch.testing.assert_close(enc(x), torch.cat(outs, dim=-1))
    assert enc.n_output_dims == (3 * len(enc.pairs) if aggregation == "concat" else 3) * 2


def test_kplanes_time_planes_start_at_one_so_product_is_static():
    enc = TriPlaneConfig(resolutions=(6,), n_features=4, aggregation="product").build(4)
    x = torch.rand(20, 4)
    moved = x.clone()
    moved[:, 3] = torch.rand(20)
    torch.testing.assert_close(enc(x), enc(moved))


@pytest.mark.parametrize(("dims", "k", "clustered"), [(2, 4, False), (3, 8, False), (2, 4, True), (3, 8, True)])
def test_neurbf_k_nearest_matches_brute_force(dims, k, clustered):
    torch.manual_seed(dims + k)
    centers = torch.rand(300, dims)
    if clustered:  # dense clusters and empty space, as weighted k-means produces
        centers = (0.3 + 0.05 * torch.randn(300, dims)).clamp(0, 1)
        centers[:40] = torch.rand(40, dims)
    cand, exact = build_candidate_lists(centers, k, grid_res=12 if dims == 2 else 6, max_candidates=300)
    assert exact
    x = torch.rand(2000, dims)
    ours = k_nearest_centers(x, centers, cand, 12 if dims == 2 else 6, k)
    brute = torch.cdist(x, centers).topk(k, dim=1, largest=False).indices
    assert torch.equal(ours.sort(dim=1).values, brute.sort(dim=1).values)


def test_neurbf_reports_inexact_candidate_lists_when_capped():
    centers = torch.rand(200, 3)
    cand, exact = build_candidate_lists(centers, 8, grid_res=2, max_candidates=10)
    assert not exact and cand.shape == (8, 10)


def test_neurbf_features_match_plain_formula():
    enc = _randomize(NeuRBFConfig(n_bases=40, n_neighbors=5, n_channels=6, min_frequency=1, max_frequency=8).build(2))
    enc = enc.double()
    x = torch.rand(25, 2, dtype=torch.float64)
    idx = torch.cdist(x, enc.centers).topk(5, dim=1, largest=False).indices
    ref = torch.zeros(25, 6, dtype=torch.float64)
    omega = torch.logspace(0, torch.log10(torch.tensor(8.0)).item(), 6, dtype=torch.float64)
    for n in range(25):
        for i in idx[n]:
            d = x[n] - enc.centers[i]
            S = enc.shapes[i].T @ enc.shapes[i]
            phi = 1.0 / (1.0 + d @ S @ d)
            ref[n] += enc.weights[i] * torch.sin(omega * phi + enc.phases)
    torch.testing.assert_close(enc(x), ref, atol=1e-6, rtol=1e-6)  # frequencies are float32 buffers


def test_weighted_kmeans_finds_weighted_cluster_means():
    torch.manual_seed(0)
    a = 0.2 + 0.02 * torch.randn(500, 2)
    b = 0.8 + 0.02 * torch.randn(500, 2)
    pts = torch.cat([a, b])
    w = torch.cat([torch.linspace(0.1, 1, 500), torch.ones(500)])
    centers = weighted_kmeans(pts, w, 2, n_iters=10, generator=torch.Generator().manual_seed(0))
    centers = centers[centers[:, 0].argsort()]
    torch.testing.assert_close(centers[0], (w[:500, None] * a).sum(0) / w[:500].sum())
    torch.testing.assert_close(centers[1], b.mean(0))


def test_neurbf_init_centers_follows_weights_and_survives_state_dict():
    enc = NeuRBFConfig(n_bases=16, n_neighbors=4, n_channels=3).build(2)
    pts = torch.rand(4000, 2)
    enc.init_centers(pts, (pts[:, 0] > 0.5).float())  # all mass on the right half
    assert (enc.centers[:, 0] > 0.5).all()
    x = torch.rand(9, 2)
    other = NeuRBFConfig(n_bases=16, n_neighbors=4, n_channels=3).build(2)
    other.load_state_dict(enc.state_dict())
    torch.testing.assert_close(other(x), enc(x))


def _cam_and_base(normalization, coord_dims=3):
    torch.manual_seed(0)
    cam = CAMConfig(base=MLPConfig(width=8, n_hidden_layers=2), coord_dims=coord_dims, resolution=4,
                    normalization=normalization, n_modulated=2).build(6, 3)
    base = MLPConfig(width=8, n_hidden_layers=2).build(6, 3)
    base.load_state_dict(cam.mlp.state_dict())
    return cam, base


@pytest.mark.parametrize("coord_dims", [2, 3, 4])
def test_cam_with_zero_modulation_is_its_base_decoder(coord_dims):
    cam, base = _cam_and_base("none", coord_dims)
    h, x = torch.randn(4, 5, 6), torch.rand(4, 5, coord_dims)
    torch.testing.assert_close(cam(h, x), base(h))
    cam_ln, base_ln = _cam_and_base("layer", coord_dims)
    layers = base_ln.layers
    ref = torch.relu(F.layer_norm(layers[0](h), (8,)))
    ref = layers[2](torch.relu(F.layer_norm(layers[1](ref), (8,))))
    torch.testing.assert_close(cam_ln(h, x), ref)


def test_cam_modulation_is_read_from_the_grids_and_trains():
    cam, base = _cam_and_base("none", 2)
    h, x = torch.randn(10, 6), torch.rand(10, 2)
    with torch.no_grad():
        cam.grids.normal_()
    modulation = cam.modulation(x)
    assert modulation.shape == (10, 2, 2, 8)
    g = grid_lookup(cam.grids, x[:, None, :])[:, 0].view(10, 2, 2, 8)
    torch.testing.assert_close(modulation, g)
    gamma, beta = 1 + g[:, 0], g[:, 1]
    layers = base.layers
    ref = torch.relu(gamma[:, 0] * layers[0](h) + beta[:, 0])
    ref = layers[2](torch.relu(gamma[:, 1] * layers[1](ref) + beta[:, 1]))
    torch.testing.assert_close(cam(h, x), ref)
    (grad,) = torch.autograd.grad(cam(h, x).sum(), cam.grids)
    assert grad.abs().sum() > 0


def test_cam_gradcheck_in_features_and_coordinates():
    cam = CAMConfig(base=MLPConfig(width=6, n_hidden_layers=2, activation="tanh"), coord_dims=3, resolution=3).build(4, 2)
    cam = _randomize(cam).double()
    h = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    x = (0.1 + 0.8 * torch.rand(3, 3, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(cam, (h, x), eps=1e-6, atol=1e-5)
    assert torch.autograd.gradgradcheck(cam, (h, x), eps=1e-6, atol=1e-5)


def test_cam_needs_coordinates():
    cam = CAMConfig(base=MLPConfig(width=4, n_hidden_layers=1), coord_dims=3).build(2, 1)
    with pytest.raises(ValueError, match="coordinates"):
        cam(torch.randn(3, 2))


def test_sine_mlp_first_layer_is_a_sine():
    mlp = SineMLPConfig(width=5, n_hidden_layers=2, first_omega=3.0).build(4, 2)
    h = torch.randn(6, 4)
    ref = mlp.layers[2](torch.relu(mlp.layers[1](torch.sin(3.0 * mlp.layers[0](h)))))
    torch.testing.assert_close(mlp(h), ref)


@pytest.mark.parametrize(
    ("n_in", "width", "depth", "n_out", "rows"),
    [(48, 64, 2, 3, 1000), (3, 16, 1, 1, 37), (32, 128, 3, 16, 130), (48, 64, 2, 3, 5), (20, 32, 2, 4, 0)],
)
def test_native_mlp_matches_the_twin_with_gradients(n_in, width, depth, n_out, rows, monkeypatch):
    native_or_skip("mlp")
    monkeypatch.setattr("omnifield.fields.mlp.wide_vector_registers", lambda: True)  # the kernel on any CPU
    torch.manual_seed(0)
    mlp = MLPConfig(width=width, n_hidden_layers=depth, output_activation="sigmoid").build(n_in, n_out)
    x = torch.randn(rows, n_in, requires_grad=True)
    y = mlp(x)
    assert _autograd_node_names(y) & {"_NativeMLPBackward"}  # the native kernel ran
    reference = torch.sigmoid(mlp.twin(x))
    torch.testing.assert_close(y, reference, rtol=1e-5, atol=1e-6)
    grad_y = torch.randn_like(y)
    ours = torch.autograd.grad(y, [x, *mlp.parameters()], grad_y)
    theirs = torch.autograd.grad(reference, [x, *mlp.parameters()], grad_y)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "torch-layers"])
@pytest.mark.parametrize("layer_norm", [True, False])
@pytest.mark.parametrize(("n_in", "width", "depth", "n_modulated", "n_out", "rows"),
                         [(63, 128, 4, 1, 16, 300), (32, 64, 1, 1, 16, 129), (5, 16, 3, 2, 3, 7), (8, 32, 2, 2, 1, 0)])
def test_native_modulated_mlp_matches_the_twin_with_gradients(n_in, width, depth, n_modulated, n_out, rows,
                                                              layer_norm, fused, monkeypatch):
    """CAM's modulated hidden layers natively, inside the fused MLP kernel (CPUs with AVX-512) or as one
    native op between torch's layers (other CPUs): outputs and every gradient (features, modulation,
    weights) against the all-torch twin, with and without the layer norm."""
    native_or_skip("mlp")
    monkeypatch.setattr("omnifield.fields.mlp.wide_vector_registers", lambda: fused)
    torch.manual_seed(2)
    mlp = _randomize(MLPConfig(width=width, n_hidden_layers=depth).build(n_in, n_out))
    h = torch.randn(rows, n_in, requires_grad=True)
    modulation = (0.5 * torch.randn(rows, 2, n_modulated, width)).requires_grad_(True)
    y = mlp.modulated(h, modulation, layer_norm)
    assert _autograd_node_names(y) & {"_NativeMLPBackward" if fused else "_NativeModulationBackward"}
    reference = _mlp_layers(h, list(mlp._layer_parameters()), torch.relu, modulation, layer_norm)
    # float32 sums in another order: errors relative to each tensor's largest entry (outputs reach ~100 here)
    torch.testing.assert_close(y, reference, rtol=1e-4, atol=1e-6 * _scale(reference))
    grad_y = torch.randn_like(y)
    inputs = [h, modulation, *mlp.parameters()]
    for ours, theirs in zip(torch.autograd.grad(y, inputs, grad_y), torch.autograd.grad(reference, inputs, grad_y)):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6 * _scale(theirs))


def _scale(t: torch.Tensor) -> float:
    return 1.0 + (t.abs().max().item() if t.numel() else 0.0)


def test_native_modulated_mlp_is_the_plain_formula():
    """The twin itself against the modulation written out by hand for one layer: relu(g * LN(Wh + b) + s)."""
    torch.manual_seed(3)
    mlp = MLPConfig(width=16, n_hidden_layers=1).build(4, 2)
    h, modulation = torch.randn(9, 4), torch.randn(9, 2, 1, 16)
    pre = h @ mlp.layers[0].weight.T + mlp.layers[0].bias
    z = (pre - pre.mean(-1, keepdim=True)) / torch.sqrt(pre.var(-1, unbiased=False, keepdim=True) + 1e-5)
    hidden = torch.relu((1 + modulation[:, 0, 0]) * z + modulation[:, 1, 0])
    expected = hidden @ mlp.layers[1].weight.T + mlp.layers[1].bias
    torch.testing.assert_close(mlp.modulated(h, modulation, layer_norm=True), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "torch-layers"])
def test_native_cam_backward_can_be_differentiated_again(fused, monkeypatch):
    """A loss on d(out)/dx through a CAM decoder on the native kernels gets the gradients of the same decoder
    in float64, where everything runs in torch."""
    native_or_skip("mlp")
    monkeypatch.setattr("omnifield.fields.mlp.wide_vector_registers", lambda: fused)
    cam = _randomize(CAMConfig(base=MLPConfig(width=16, n_hidden_layers=2), coord_dims=3, resolution=4).build(3, 1))
    x = 0.1 + 0.8 * torch.rand(32, 3)

    def eikonal_grads(decoder, points):
        points = points.clone().requires_grad_(True)
        (dydx,) = torch.autograd.grad(decoder(points, points).sum(), points, create_graph=True)
        return torch.autograd.grad(dydx.square().sum(), [decoder.grids, *decoder.mlp.layers[0].parameters()])

    ours = eikonal_grads(cam, x)
    assert _autograd_node_names(cam(x, x)) & {"_NativeMLPBackward" if fused else "_NativeModulationBackward"}
    reference = eikonal_grads(copy.deepcopy(cam).double(), x.double())
    for a, b in zip(ours, reference):
        torch.testing.assert_close(a, b.float(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "torch-layers"])
def test_native_modulation_not_contiguous_is_differentiated_twice(fused, monkeypatch):
    """A modulation that is a strided view: the second derivative still reaches it (the kernels read a
    contiguous copy, the graph keeps the view)."""
    native_or_skip("mlp")
    monkeypatch.setattr("omnifield.fields.mlp.wide_vector_registers", lambda: fused)
    mlp = _randomize(MLPConfig(width=16, n_hidden_layers=2).build(3, 1))
    h = torch.randn(20, 3, requires_grad=True)
    base = torch.randn(16, 2, 1, 20, requires_grad=True)

    def second(native: bool):
        modulation = base.permute(3, 1, 2, 0)  # [20, 2, 1, 16], not contiguous
        out = mlp.modulated(h, modulation, True) if native else _mlp_layers(
            h, list(mlp._layer_parameters()), torch.relu, modulation, True)
        (dh,) = torch.autograd.grad(out.sum(), h, create_graph=True)
        return torch.autograd.grad(dh.square().sum(), base)[0]

    torch.testing.assert_close(second(True), second(False), rtol=1e-4, atol=1e-5)


def _autograd_node_names(t: torch.Tensor) -> set[str]:
    """The class names of every node of ``t``'s autograd graph."""
    seen, todo = set(), [t.grad_fn]
    while todo:
        node = todo.pop()
        if node is not None and node not in seen:
            seen.add(node)
            todo.extend(next_node for next_node, _ in node.next_functions)
    return {type(node).__name__ for node in seen}


def test_native_mlp_backward_can_be_differentiated_again(monkeypatch):
    """An eikonal-style loss (a gradient of the output, then its backward) gets the twin's gradients."""
    native_or_skip("mlp")
    monkeypatch.setattr("omnifield.fields.mlp.wide_vector_registers", lambda: True)
    torch.manual_seed(1)
    mlp = MLPConfig(width=32, n_hidden_layers=2).build(3, 1)
    x = torch.randn(64, 3, requires_grad=True)

    def eikonal_grads(forward):
        (dydx,) = torch.autograd.grad(forward(x).sum(), x, create_graph=True)
        weights = list(mlp.parameters())[:-1]  # the output bias does not move dy/dx
        return torch.autograd.grad((dydx.norm(dim=-1) - 1).square().mean(), weights)

    for a, b in zip(eikonal_grads(mlp), eikonal_grads(mlp.twin)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("cfg", [MLPConfig(width=20), MLPConfig(activation="tanh"), MLPConfig(bias=False)])
def test_mlps_the_native_kernel_cannot_express_run_the_twin(cfg):
    mlp = cfg.build(5, 2)
    x = torch.randn(9, 5)
    assert not mlp.fusable and torch.equal(mlp(x), mlp.twin(x))


@pytest.mark.parametrize("cfg", [MLPConfig(width=64, n_hidden_layers=2), MLPConfig(activation="tanh", bias=False)])
def test_no_grad_cpu_forward_in_blocks_matches_one_pass(cfg, monkeypatch):
    monkeypatch.setattr(mlp_module, "INFERENCE_BLOCK_ROWS", 64)
    monkeypatch.setattr(mlp_module, "wide_vector_registers", lambda: False)  # the torch layers, not the kernel
    mlp = cfg.build(7, 3)
    x = torch.randn(64 * 3 + 17, 7)
    with torch.no_grad():
        blocked = mlp(x)
        spy = []
        monkeypatch.setattr(mlp_module, "_mlp_layers", lambda h, *a: spy.append(h.shape[0]) or _mlp_layers(h, *a))
        mlp(x)
    assert spy == [64, 64, 64, 17]  # the blocks, the last one ragged
    torch.testing.assert_close(blocked, mlp.twin(x), rtol=1e-6, atol=1e-6)
    assert mlp(x).requires_grad  # with autograd on, one pass as before


@pytest.mark.parametrize(
    "cfg",
    [
        TriPlaneConfig(resolutions=(8, 16), aggregation="concat"),
        NeuRBFConfig(n_bases=64, grid=HashGridConfig(n_levels=2)),
        CAMConfig(base=MLPConfig(width=16), coord_dims=2, normalization="none"),
        SineMLPConfig(width=7),
    ],
)
def test_configs_round_trip_through_json_dicts(cfg):
    assert config_from_dict(config_to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (RadianceFieldConfig(encoding=TriPlaneConfig(aggregation="max")), "aggregation"),
        (RadianceFieldConfig(encoding=TriPlaneConfig(resolutions=(1,))), "resolution"),
        (RadianceFieldConfig(encoding=NeuRBFConfig(n_bases=0)), "n_bases"),
        (RadianceFieldConfig(density_decoder=CAMConfig(normalization="batch")), "normalization"),
        (RadianceFieldConfig(density_decoder=CAMConfig(base=SineMLPConfig())), "MLP config"),
    ],
)
def test_bad_configs_give_one_clear_error(cfg, message):
    with pytest.raises(OmnifieldError, match=message):
        build_field(cfg)


def test_a_local_rank_beyond_the_gpus_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(OmnifieldError, match="local rank 1: start at most 1 process"):
        resolve_device("auto")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert resolve_device("auto") == torch.device("cuda", 0)


def test_a_gpu_run_without_the_cuda_library_says_so(monkeypatch):
    from omnifield import backend

    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")
    monkeypatch.delenv("OMNIFIELD_BACKEND", raising=False)  # forcing the torch twins silences the note
    monkeypatch.setattr(backend, "has_module", lambda name: name == "gsplat")
    assert backend.missing_cuda_library_note(cpu, "nerfacc", "marching") is None
    assert backend.missing_cuda_library_note(cuda, "gsplat", "rasterization") is None
    note = backend.missing_cuda_library_note(cuda, "nerfacc", "ray marching")
    assert "nerfacc is not installed" in note and "pip install nerfacc" in note


@pytest.mark.parametrize("sum_grids", [False, True], ids=["each", "summed"])
@pytest.mark.parametrize("shape", [(3, 9, 9, 5), (1, 17, 4), (2, 5, 5, 5, 3)], ids=["planes", "line", "volume"])
def test_native_grid_lookup_matches_the_twin_with_gradients(shape, sum_grids):
    """Native lookups (each grid's, or summed over the grids as CAM and the sum tri-plane take them) against
    the twin's per-grid lookups, summed in the test: values, both first gradients and a second one."""
    from omnifield.fields.grid_lookup import _grid_lookup

    def reference(grids, coords):
        out = _grid_lookup(grids, coords)
        return out.sum(dim=1) if sum_grids else out

    d = len(shape) - 2
    native_or_skip("grid_lookup")
    g = torch.Generator().manual_seed(0)
    grids = torch.randn(shape, generator=g).requires_grad_()
    coords = (torch.rand(200, shape[0], d, generator=g) * 1.2 - 0.1).requires_grad_()  # some outside [0, 1]
    upstream = torch.randn(200, *([] if sum_grids else [shape[0]]), shape[-1], generator=g)
    results = []
    for fn in (lambda gr, c: grid_lookup(gr, c, sum_grids), reference):
        out = fn(grids, coords)
        results.append((out, *torch.autograd.grad(out, (grids, coords), upstream)))
    assert results[0][0].shape == upstream.shape
    for native, twin in zip(*results):
        torch.testing.assert_close(native, twin, rtol=1e-5, atol=1e-5)
    # a second derivative (as an eikonal loss takes) goes through the twin and agrees with it
    second = []
    for fn in (lambda gr, c: grid_lookup(gr, c, sum_grids), reference):
        (dx,) = torch.autograd.grad(fn(grids, coords).sum(), coords, create_graph=True)
        second.append(torch.autograd.grad(dx.square().sum(), grids)[0])
    torch.testing.assert_close(second[0], second[1], rtol=1e-5, atol=1e-5)
