"""3-D ViT MAE: patching, masking, the masked loss, pre-training and fine-tuning, checkpoints, CLI."""

import json

import pytest
import torch

import omnifield.apps.mae as mae_pkg
from omnifield.apps.mae.dataset import scene_grid, write_scene_grids
from omnifield.apps.mae.model import (
    MAE3D,
    MAE3DConfig,
    masked_reconstruction_loss,
    patchify,
    random_token_mask,
    unpatchify,
)
from omnifield.apps.mae.runs import load_model, save_model, segmenter_from_mae
from omnifield.apps.mae.scene import CLASS_NAMES, generate_scene
from omnifield.apps.mae.train import (
    FinetuneConfig,
    PretrainConfig,
    evaluate_reconstruction,
    finetune_segmenter,
    predict_labels,
    pretrain_mae,
    segmentation_scores,
)
from omnifield.cli import main
from omnifield.engine import LoopConfig
from omnifield.errors import OmnifieldError

TINY = MAE3DConfig(dim=24, depth=1, heads=2, decoder_dim=24, decoder_depth=1, decoder_heads=2)


def test_all_names_exist():
    for name in mae_pkg.__all__:
        assert hasattr(mae_pkg, name), name


def test_patchify_puts_each_cube_in_its_token_and_inverts():
    grid = torch.randn(2, 4, 8, 12, 4)
    tokens = patchify(grid, 4)
    assert tokens.shape == (2, 2 * 3 * 1, 64 * 4)
    i, j = 1, 2  # token (1, 2, 0) is number 1 * 3 + 2
    cube = grid[:, :, 4 * i : 4 * i + 4, 4 * j : 4 * j + 4, 0:4]
    torch.testing.assert_close(tokens[:, i * 3 + j].reshape(2, 4, 4, 4, 4), cube.permute(0, 2, 3, 4, 1))
    torch.testing.assert_close(unpatchify(tokens, (8, 12, 4), 4), grid)
    with pytest.raises(OmnifieldError, match="divisible"):
        patchify(torch.zeros(1, 4, 6, 8, 8), 4)


@pytest.mark.parametrize("n_tokens,ratio", [(512, 0.75), (27, 0.75), (64, 0.5)])
def test_mask_hides_the_requested_fraction_of_token_cubes(n_tokens, ratio):
    keep, mask = random_token_mask(5, n_tokens, ratio, torch.Generator().manual_seed(0))
    n_hidden = round(ratio * n_tokens)
    assert torch.all(mask.sum(1) == n_hidden)
    assert keep.shape == (5, n_tokens - n_hidden)
    for b in range(5):  # visible indices are exactly the complement of the mask
        assert set(keep[b].tolist()) == set(torch.nonzero(~mask[b]).flatten().tolist())
    assert not torch.equal(mask[0], mask[1])


def _reference_loss(pred, target, mask, occ):
    """The NeRF-MAE loss written voxel by voxel."""
    rgb_sum, rgb_n, a_sum, a_n = 0.0, 0, 0.0, 0
    p, t = pred.reshape(*pred.shape[:2], -1, 4), target.reshape(*target.shape[:2], -1, 4)
    for b in range(p.shape[0]):
        for k in range(p.shape[1]):
            if not mask[b, k]:
                continue
            for v in range(p.shape[2]):
                a_sum += float((p[b, k, v, 3] - t[b, k, v, 3]) ** 2)
                a_n += 1
                if t[b, k, v, 3] > occ:
                    rgb_sum += float(((p[b, k, v, :3] - t[b, k, v, :3]) ** 2).mean())
                    rgb_n += 1
    return rgb_sum / rgb_n + a_sum / a_n


def test_loss_matches_reference_and_ignores_visible_tokens():
    gen = torch.Generator().manual_seed(3)
    target = torch.rand(2, 6, 8 * 4, generator=gen)
    target[..., 3::4] = torch.where(target[..., 3::4] < 0.4, 0.0, target[..., 3::4])  # some empty voxels
    pred = torch.rand(2, 6, 8 * 4, generator=gen, requires_grad=True)
    mask = torch.tensor([[1, 0, 1, 1, 0, 0], [0, 1, 1, 0, 1, 1]], dtype=torch.bool)
    loss = masked_reconstruction_loss(pred, target, mask)["loss"]
    assert loss.item() == pytest.approx(_reference_loss(pred.detach(), target, mask, 0.01), rel=1e-5)
    loss.backward()
    assert torch.all(pred.grad[~mask] == 0) and torch.any(pred.grad[mask] != 0)
    changed = pred.detach().clone()
    changed[~mask] = torch.rand_like(changed[~mask])
    assert float(masked_reconstruction_loss(changed, target, mask)["loss"]) == pytest.approx(loss.item(), rel=1e-6)


def test_loss_ignores_rgb_of_empty_voxels():
    target = torch.zeros(1, 1, 4)
    pred = torch.tensor([[[0.9, 0.9, 0.9, 0.0]]])
    terms = masked_reconstruction_loss(pred, target, torch.ones(1, 1, dtype=torch.bool))
    assert float(terms["rgb"]) == 0 and float(terms["alpha"]) == 0


def test_encoder_sees_only_visible_tokens():
    model = MAE3D(TINY)
    seen = {}
    model.encoder.blocks.register_forward_hook(lambda m, i, o: seen.update(n=o.shape[1]))
    pred, mask = model(torch.rand(2, 4, 16, 16, 16))
    assert pred.shape == (2, 64, 256) and mask.shape == (2, 64)
    assert seen["n"] == 16 and torch.all((pred >= 0) & (pred <= 1))


@pytest.fixture(scope="module")
def tiny_grids():
    grids = [scene_grid(generate_scene(s), resolution=16) for s in range(6)]
    rgba = torch.stack([torch.from_numpy(g.rgba) for g in grids])
    labels = torch.stack([torch.from_numpy(g.labels) for g in grids])
    return rgba, labels


def test_tiny_pretraining_lowers_the_held_out_loss(tiny_grids):
    rgba, _ = tiny_grids
    torch.manual_seed(0)
    model = MAE3D(TINY)
    before = evaluate_reconstruction(model, rgba[4:], seed=5)
    history = pretrain_mae(model, rgba[:4], PretrainConfig(batch_size=2, lr=3e-3, seed=0),
                           LoopConfig(steps=20, progress=False))
    after = evaluate_reconstruction(model, rgba[4:], seed=5)
    assert len(history) == 20
    assert after["loss"] < 0.7 * before["loss"]
    assert after["psnr_alpha"] > before["psnr_alpha"]


def test_finetuning_lowers_the_loss_and_scores_are_right(tiny_grids):
    rgba, labels = tiny_grids
    model = segmenter_from_mae(None, TINY, len(CLASS_NAMES), seed=0)
    history = finetune_segmenter(model, rgba[:2], labels[:2], FinetuneConfig(batch_size=2, lr=3e-3),
                                 LoopConfig(steps=25, progress=False))
    assert sum(h["loss"] for h in history[-5:]) < sum(h["loss"] for h in history[:5])
    pred = predict_labels(model, rgba[:2])
    assert pred.shape == labels[:2].shape
    perfect = segmentation_scores(labels, labels, len(CLASS_NAMES))
    assert perfect["miou"] == 1.0 and perfect["fg_accuracy"] == 1.0
    target = torch.tensor([0, 1, 1, 2, 2, 2])
    guess = torch.tensor([0, 1, 2, 2, 2, 0])
    scores = segmentation_scores(guess, target, 3)  # IoU(1) = 1/2, IoU(2) = 2/4
    assert scores["miou"] == pytest.approx(0.5) and scores["fg_accuracy"] == pytest.approx(3 / 5)


def test_frozen_encoder_keeps_its_weights_and_the_head_learns(tiny_grids):
    rgba, labels = tiny_grids
    model = segmenter_from_mae(MAE3D(TINY), TINY, len(CLASS_NAMES), seed=0)
    encoder_before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    head_before = model.classify[0].weight.detach().clone()
    finetune_segmenter(model, rgba[:2], labels[:2], FinetuneConfig(batch_size=2, lr=3e-3, encoder_lr_scale=0.0),
                       LoopConfig(steps=5, progress=False))
    for key, value in model.encoder.state_dict().items():
        torch.testing.assert_close(value, encoder_before[key], rtol=0, atol=0)
    assert not torch.equal(model.classify[0].weight, head_before)
    with pytest.raises(OmnifieldError, match="encoder-lr-scale must be >= 0"):
        finetune_segmenter(model, rgba[:2], labels[:2], FinetuneConfig(encoder_lr_scale=-1.0),
                           LoopConfig(steps=1, progress=False))


def test_pretrained_encoder_is_copied_and_checkpoints_roundtrip(tmp_path):
    torch.manual_seed(1)
    mae = MAE3D(TINY)
    seg = segmenter_from_mae(mae, TINY, len(CLASS_NAMES), seed=2)
    for a, b in zip(mae.encoder.parameters(), seg.encoder.parameters()):
        assert torch.equal(a, b)
    save_model(tmp_path / "mae", mae, {"steps": 0})
    save_model(tmp_path / "seg", seg, {"steps": 0})
    mae2, meta = load_model(tmp_path / "mae", "mae")
    assert meta["kind"] == "mae" and mae2.cfg == TINY
    x = torch.rand(1, 4, 8, 8, 8)
    torch.testing.assert_close(seg(x), load_model(tmp_path / "seg")[0](x))
    g = torch.Generator().manual_seed(0)
    torch.testing.assert_close(mae(x, g)[0], mae2(x, torch.Generator().manual_seed(0))[0])
    with pytest.raises(OmnifieldError, match="expected a mae"):
        load_model(tmp_path / "seg", "mae")


def test_cli_pretrain_finetune_eval(tmp_path, capsys):
    write_scene_grids(tmp_path / "pre", range(5), resolution=8)
    write_scene_grids(tmp_path / "lab", range(100, 104), resolution=8)
    small = ["--dim", "24", "--depth", "1", "--heads", "2", "--threads", "1"]
    assert main(["mae", "pretrain", str(tmp_path / "pre"), "--out", str(tmp_path / "mae"), "--steps", "3",
                 "--batch", "2", "--holdout", "1", *small]) == 0
    assert main(["mae", "finetune", str(tmp_path / "lab"), "--out", str(tmp_path / "seg"), "--steps", "2",
                 "--labelled", "2", "--pretrained", str(tmp_path / "mae"), "--threads", "1"]) == 0
    capsys.readouterr()
    assert main(["mae", "eval", str(tmp_path / "seg"), str(tmp_path / "lab"), "--skip", "2", "--threads", "1"]) == 0
    result = json.loads(capsys.readouterr().out.split("figure:")[0])
    assert 0 <= result["miou"] <= 1 and result["grids"] == 2
    assert (tmp_path / "seg" / "eval.png").stat().st_size > 1000
    assert main(["mae", "eval", str(tmp_path / "mae"), str(tmp_path / "pre"), "--skip", "4", "--threads", "1"]) == 0
    assert (tmp_path / "mae" / "eval.png").is_file() and (tmp_path / "mae" / "loss.png").is_file()
    assert main(["mae", "pretrain", str(tmp_path / "nope"), "--out", str(tmp_path / "x")]) == 2
    assert main(["mae", "finetune", str(tmp_path / "lab"), "--out", str(tmp_path / "y"), "--labelled", "0"]) == 2
