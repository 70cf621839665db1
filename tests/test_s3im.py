"""S3IM against a direct transcription of the paper's code, identities, and training behaviour."""

import math

import pytest
import torch
import torch.nn.functional as F

from omnifield.errors import OmnifieldError
from omnifield.losses.s3im import s3im_loss
from omnifield.metrics import ssim


def _paper_ssim(img1, img2, window_size, stride):
    """The S3IM repository's SSIM: Gaussian window (sigma 1.5), zero padding (k-1)//2, strided conv."""
    g = torch.tensor([math.exp(-((x - window_size // 2) ** 2) / (2 * 1.5**2)) for x in range(window_size)])
    g = g / g.sum()
    channel = img1.shape[1]
    window = (g[:, None] @ g[None, :]).expand(channel, 1, window_size, window_size).contiguous()
    pad = (window_size - 1) // 2
    conv = lambda t: F.conv2d(t, window, padding=pad, groups=channel, stride=stride)  # noqa: E731
    mu1, mu2 = conv(img1), conv(img2)
    s11 = conv(img1 * img1) - mu1**2
    s22 = conv(img2 * img2) - mu2**2
    s12 = conv(img1 * img2) - mu1 * mu2
    c1, c2 = 0.01**2, 0.03**2
    return (((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1**2 + mu2**2 + c1) * (s11 + s22 + c2))).mean()


@pytest.mark.parametrize("window,stride,size", [("gaussian", 1, 11), ("gaussian", 3, 11), ("uniform", 2, 4), ("gaussian", 1, 7)])
def test_separable_ssim_equals_the_two_dimensional_window(window, stride, size):
    """The row-then-column window equals the plain 2-D window, values and gradients."""
    g = torch.Generator().manual_seed(3)
    pred = torch.rand(2, 3, 23, 30, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.rand(2, 3, 23, 30, generator=g, dtype=torch.float64)
    if window == "gaussian":
        w = torch.tensor([math.exp(-((x - (size - 1) / 2) ** 2) / (2 * 1.5**2)) for x in range(size)], dtype=torch.float64)
        w = w / w.sum()
    else:
        w = torch.full((size,), 1.0 / size, dtype=torch.float64)
    kernel = (w[:, None] * w[None, :]).expand(3, 1, size, size)
    conv = lambda t: F.conv2d(t, kernel, stride=stride, groups=3)  # noqa: E731
    mu1, mu2 = conv(pred), conv(target)
    s11, s22, s12 = conv(pred * pred) - mu1**2, conv(target * target) - mu2**2, conv(pred * target) - mu1 * mu2
    c1, c2 = 0.01**2, 0.03**2
    reference = (((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1**2 + mu2**2 + c1) * (s11 + s22 + c2))).mean()
    ours = ssim(pred, target, window_size=size, stride=stride, window=window)
    torch.testing.assert_close(ours, reference)
    torch.testing.assert_close(torch.autograd.grad(ours, pred)[0], torch.autograd.grad(reference, pred)[0])


def _paper_s3im(src_vec, tar_vec, repeats, kernel, stride, height, width, generator):
    """The paper's S3IM.forward, with its global RNG replaced by ``generator``; pixels placed one by one."""
    index = [torch.arange(len(tar_vec))] + [torch.randperm(len(tar_vec), generator=generator)
                                            for _ in range(repeats - 1)]
    res_index = torch.cat(index)
    src_patch = torch.zeros(1, 3, height, width * repeats)
    tar_patch = torch.zeros(1, 3, height, width * repeats)
    k = torch.arange(len(res_index))  # row-major layout of permute(1, 0).reshape(...), written as indices
    src_patch[0, :, k // (width * repeats), k % (width * repeats)] = src_vec[res_index].T
    tar_patch[0, :, k // (width * repeats), k % (width * repeats)] = tar_vec[res_index].T
    return 1 - _paper_ssim(src_patch, tar_patch, kernel, stride)


@pytest.mark.parametrize("repeats,kernel,stride,height,width", [(10, 4, 4, 16, 16), (3, 3, 1, 8, 12), (1, 5, 2, 8, 8)])
def test_s3im_equals_ssim_of_the_arranged_virtual_image(repeats, kernel, stride, height, width):
    g = torch.Generator().manual_seed(1)
    pred, target = torch.rand(height * width, 3, generator=g), torch.rand(height * width, 3, generator=g)
    ours = s3im_loss(pred, target, repeats=repeats, kernel_size=kernel, stride=stride, patch_height=height,
                     generator=torch.Generator().manual_seed(7))
    ref = _paper_s3im(pred, target, repeats, kernel, stride, height, width, torch.Generator().manual_seed(7))
    assert float(ours) == pytest.approx(float(ref), abs=1e-6)


def test_s3im_is_zero_for_identical_inputs_and_positive_otherwise():
    rgb = torch.rand(4096, 3, generator=torch.Generator().manual_seed(0))
    assert float(s3im_loss(rgb, rgb.clone())) == pytest.approx(0.0, abs=1e-6)
    noisy = (rgb + 0.1 * torch.randn(4096, 3, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    assert float(s3im_loss(noisy, rgb)) > 0.05


def test_s3im_uses_only_whole_columns_for_odd_batch_sizes():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.rand(1000, 3, generator=g), torch.rand(1000, 3, generator=g)
    loss = s3im_loss(pred, target, repeats=2, patch_height=64, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and 0.0 < float(loss) < 2.0


def test_s3im_rejects_bad_shapes_and_tiny_batches():
    with pytest.raises(OmnifieldError, match="rays, channels"):
        s3im_loss(torch.rand(64, 3), torch.rand(63, 3))
    with pytest.raises(OmnifieldError, match="virtual image"):
        s3im_loss(torch.rand(10, 3), torch.rand(10, 3), repeats=1, patch_height=64)


def test_s3im_decreases_when_training_a_toy_field():
    torch.manual_seed(0)
    coords = torch.rand(512, 2)
    target = torch.stack([torch.sin(6 * coords[:, 0]), torch.cos(5 * coords[:, 1]), coords.prod(-1)], -1) * 0.5 + 0.5
    field = torch.nn.Sequential(torch.nn.Linear(2, 64), torch.nn.ReLU(), torch.nn.Linear(64, 3), torch.nn.Sigmoid())
    opt = torch.optim.Adam(field.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(100):
        loss = s3im_loss(field(coords), target, repeats=4, patch_height=16, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:10]) / 10
