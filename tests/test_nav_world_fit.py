"""``nav run``'s learned room field: fitted by the training engine into ``learned_field.safetensors``,
re-used when finished there, continued (to the same weights) when a fit was cut short."""

import pytest
import torch

from omnifield.apps.nav import world_fit
from omnifield.apps.nav.cli import FIELD_FILE, learned_room_field
from omnifield.apps.nav.scenes import pillar_room
from omnifield.engine.regression import FieldFit
from omnifield.io.checkpoint import load_checkpoint
from tests._processes import ctrl_c_at
from tests.test_fit_engine import repeatable  # noqa: F401 - fixture re-used

STEPS = 4


def test_room_field_is_continued_after_a_cut_and_reused_when_finished(tmp_path, monkeypatch, repeatable):  # noqa: F811
    world = pillar_room(n_pillars=1)
    torch.manual_seed(0)
    straight = learned_room_field(world, tmp_path / "straight", STEPS, seed=0).state_dict()

    step = FieldFit.training_step
    ctrl_c_at(monkeypatch, FieldFit, "training_step", step=2)
    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        learned_room_field(world, tmp_path / "cut", STEPS, seed=0)
    monkeypatch.setattr(FieldFit, "training_step", step)
    assert load_checkpoint(tmp_path / "cut" / FIELD_FILE)[1]["step"] == 2
    torch.manual_seed(1)  # the checkpoint's RNG and weights take over: the global seed does not matter
    resumed = learned_room_field(world, tmp_path / "cut", STEPS, seed=0).state_dict()
    assert load_checkpoint(tmp_path / "cut" / FIELD_FILE)[1]["step"] == STEPS
    for name, value in straight.items():
        torch.testing.assert_close(resumed[name], value, rtol=0, atol=0, msg=name)

    def no_fit(*args, **kwargs):
        raise AssertionError("a finished fit with the same settings must be re-used")

    fit = world_fit.fit_field_to_world
    monkeypatch.setattr(world_fit, "fit_field_to_world", no_fit)
    reused = learned_room_field(world, tmp_path / "cut", STEPS, seed=0).state_dict()
    assert all(torch.equal(reused[k], straight[k]) for k in straight)
    monkeypatch.setattr(world_fit, "fit_field_to_world", fit)
    other = learned_room_field(world, tmp_path / "cut", STEPS + 1, seed=0).state_dict()  # new settings: a new fit
    assert load_checkpoint(tmp_path / "cut" / FIELD_FILE)[1]["recipe"]["fit_steps"] == STEPS + 1
    assert any(not torch.equal(other[k], straight[k]) for k in straight)
