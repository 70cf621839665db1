"""Field -> Gaussians on the training engine: teacher views rendered lazily (each once, only those a budget
uses), and an interrupted conversion resumed from its folder equals a straight one."""

import json

import pytest
import torch

from omnifield.apps.convert.to_splat import SplatDistillConfig, SplatDistillTask, distill_to_splat, teacher_cameras
from omnifield.apps.recon.run import Run
from omnifield.data.scene import load_scene
from omnifield.engine import LoopConfig
from omnifield.io.splat_run import load_splat_run
from tests._processes import ctrl_c_at
from tests.test_distill_cli import teacher_run  # noqa: F401  (fixture)


@pytest.fixture
def teacher(teacher_run, monkeypatch):  # noqa: F811
    """``(field, renderer, train split, render calls)`` of the tiny teacher; every full render is counted."""
    monkeypatch.setenv("OMNIFIELD_BACKEND", "torch")
    run, _, _ = Run.open(teacher_run)
    calls = []
    render = run.renderer.render_image
    monkeypatch.setattr(run.renderer, "render_image", lambda *a, **k: calls.append(a[2]) or render(*a, **k))
    return run.field, run.renderer, load_scene(run.data_dir, "train", run.downscale), calls


def convert(teacher, out, loop, resume=False, views=3):
    field, renderer, train, _ = teacher
    return distill_to_splat(field, renderer, train, SplatDistillConfig(n_gaussians=30, teacher_views=views), loop,
                            out, {"method": "splat"}, resume)


def test_each_teacher_view_is_rendered_once_when_first_used(teacher, tmp_path):
    scene, engine = convert(teacher, tmp_path / "out", LoopConfig(steps=5, log_every=1, progress=False))
    calls = teacher[3]
    assert engine.step == 5 and len(calls) == 3 and sorted(calls) == [0, 1, 2]  # steps 3, 4 reuse views
    assert calls == engine.task.order.tolist()  # in the seeded order: step s fits view order[s % V]
    assert engine.task.views.renders == 3 and len(load_splat_run(tmp_path / "out")) == len(scene) == 30


def test_a_minutes_budget_renders_only_the_views_it_uses(teacher, tmp_path):
    """The first step (kernel compile) is off the clock, the second spends a microsecond budget."""
    _, engine = convert(teacher, tmp_path / "out", LoopConfig(minutes=1e-8, progress=False), views=64)
    assert 1 <= engine.step < 64 and len(teacher[3]) == engine.step


def test_teacher_cameras_split_between_training_cameras_and_sphere_poses(teacher):
    train = teacher[2].cameras  # 4 training cameras
    for n, n_train in ((1, 1), (3, 2), (8, 4), (64, 4)):
        cameras = teacher_cameras(train, n, torch.Generator().manual_seed(0))
        is_train = (cameras.c2w[:, None] == train.c2w[None]).flatten(2).all(-1).any(-1)
        assert len(cameras) == n and is_train.tolist() == [True] * n_train + [False] * (n - n_train)


def test_interrupted_conversion_resumed_equals_a_straight_run(teacher, tmp_path, monkeypatch, one_thread):
    """Ctrl-C at step 4 of 7, then ``resume``: the same Gaussians, Adam moments and losses as 7 steps at once,
    with the teacher's views rendered again by the resumed run."""
    loop = LoopConfig(steps=7, log_every=1, progress=False, checkpoint_every_s=1e9)
    straight, first = convert(teacher, tmp_path / "straight", loop)
    step = SplatDistillTask.training_step
    ctrl_c_at(monkeypatch, SplatDistillTask, "training_step", step=4)
    with pytest.raises(KeyboardInterrupt):
        convert(teacher, tmp_path / "resumed", loop)
    monkeypatch.setattr(SplatDistillTask, "training_step", step)
    torch.manual_seed(2)  # another global RNG: all must come from the checkpoint
    resumed, engine = convert(teacher, tmp_path / "resumed", loop, resume=True)
    assert engine.step == 7 and len(teacher[3]) == 3 + 3 + 3  # straight, interrupted, resumed: 3 renders each
    for name, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name
    moments = [first.task.optimizer.state[p] for p in straight.parameters()]
    again = [engine.task.optimizer.state[p] for p in resumed.parameters()]
    assert all(torch.equal(a["exp_avg_sq"], b["exp_avg_sq"]) for a, b in zip(moments, again, strict=True))
    logs = [[json.loads(line) for line in (tmp_path / d / "log.jsonl").read_text().splitlines()]
            for d in ("straight", "resumed")]
    assert [r["step"] for r in logs[1]] == list(range(1, 8))
    assert [r["loss"] for r in logs[1]] == [r["loss"] for r in logs[0]]
    assert straight.active_sh_degree == resumed.active_sh_degree == 1
