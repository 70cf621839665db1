"""One flag vocabulary across the ``omnifield`` commands: ``--method`` for the backend, ``--steps`` /
``--minutes`` for budgets, a positional run folder and ``--out`` for outputs; old spellings still parse and
say they are old; an option that does not apply to the chosen method (or solver) is an error."""

from __future__ import annotations

import argparse

import pytest

from omnifield.cli import _leaf_parsers, build_parser, main
from omnifield.cli_options import declare_applicability, refuse_inapplicable
from omnifield.errors import OmnifieldError


def _parser(prog: str) -> argparse.ArgumentParser:
    return next(p for p in _leaf_parsers(build_parser()) if p.prog == f"omnifield {prog}")


def _options(prog: str) -> set[str]:
    return {o for action in _parser(prog)._actions for o in action.option_strings}


@pytest.mark.parametrize("words,dest", [
    (["train", "DATA"], "method"),
    (["convert", "RUN"], "method"),
    (["fit", "image", "a.png", "--out", "O"], "method"),
    (["fit", "sdf", "m.obj", "--out", "O"], "method"),
    (["pde", "solve", "heat"], "field"),  # the settings' key stays ``field`` (``--set field=...``)
])
def test_every_backend_is_method(words, dest):
    args = build_parser().parse_args([*words, "--method", "mlp" if words[0] != "pde" else "hashgrid"])
    assert getattr(args, dest) == ("hashgrid" if words[0] == "pde" else "mlp")


@pytest.mark.parametrize("words,old,new,dest,value", [
    (["fit", "image", "a.png", "--out", "O"], ["--backend", "triplane"], "--method", "method", "triplane"),
    (["convert", "RUN"], ["--to", "splat"], "--method", "method", "splat"),
    (["pde", "solve", "heat"], ["--field", "neurbf"], "--method", "field", "neurbf"),
    (["fit", "sdf", "m.obj", "--out", "O"], ["--seconds", "30"], "--minutes", "seconds", 30.0),
    (["nav", "run"], ["--fit-steps", "7"], "--steps", "fit_steps", 7),
    (["nav", "export", "--out", "O"], ["--run", "R"], "the positional RUN", "run", "R"),
    (["mae", "scenes"], ["G"], "--out", "out", "G"),
    (["mae", "render"], ["S"], "--out", "out", "S"),
    (["mae", "grid", "R"], ["g.npz"], "--out", "out", "g.npz"),
    (["mae", "eval", "M", "G"], ["--figure", "f.png"], "--out", "figure", "f.png"),
    (["view", "R"], ["--max-width", "300"], "--viewer-width", "viewer_width", 300),
])
def test_old_names_still_parse_and_say_they_are_old(words, old, new, dest, value, capsys):
    args = build_parser().parse_args([*words, *old])
    assert getattr(args, dest) == value
    shown = old[0] if old[0].startswith("--") else f"the positional {'OUT'}"
    assert f"omnifield: {shown} is the old name of {new}; use {new}" in capsys.readouterr().err


def test_new_names_say_nothing(capsys):
    parser = build_parser()
    assert parser.parse_args(["nav", "export", "R", "--out", "O"]).run == "R"
    assert parser.parse_args(["mae", "grid", "R", "--out", "g.npz"]).out == "g.npz"
    assert parser.parse_args(["nav", "run", "--steps", "9"]).fit_steps == 9
    assert parser.parse_args(["view", "R", "--viewer-width", "300"]).viewer_width == 300
    assert parser.parse_args(["eval", "R", "--out", "E"]).out == "E"
    assert capsys.readouterr().err == ""


def test_pde_method_and_set_field_agree():
    from omnifield.pde.cli import parse_solve_args
    from omnifield.pde.solvers.run import configure

    chosen = [configure("heat", parse_solve_args(["heat", *given])).settings.field
              for given in (["--method", "hashgrid"], ["--field", "hashgrid"], ["--set", "field=hashgrid"])]
    assert chosen == ["hashgrid"] * 3
    assert configure("heat", parse_solve_args(["heat", "--solver", "pig"])).settings.field == "gaussian_embedding"


TRAINING = ["train", "convert", "fit image", "fit sdf", "pde solve", "mae pretrain", "mae finetune"]


@pytest.mark.parametrize("prog", TRAINING)
def test_every_training_command_has_the_loop_options(prog):
    assert {"--steps", "--minutes", "--resume", "--quiet", "--threads", "--seed", "--out"} <= _options(prog)
    assert "--seconds" not in _options(prog) or prog.startswith("fit")  # only as fit's old name


def test_nav_export_takes_the_run_positionally(tmp_path, capsys):
    assert main(["nav", "export", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "nope" in capsys.readouterr().err  # the positional reached the run loader
    assert main(["nav", "export", "--out", str(tmp_path / "o")]) == 2
    assert "give exactly one of a run folder RUN or --scene room" in capsys.readouterr().err


def test_mae_outputs_need_out(tmp_path, capsys):
    assert main(["mae", "scenes", "--count", "1"]) == 2
    assert capsys.readouterr().err.strip() == "omnifield: error: --out (the output folder) is required"


NOT_APPLICABLE = [
    (["train", "@d", "--method", "hashgrid", "--compact"], "--compact applies to --method splat only "
                                                           "(got --method hashgrid)"),
    (["train", "@d", "--method", "mlp", "--init", "points"], "--init applies to --method splat only "
                                                             "(got --method mlp)"),
    (["train", "@d", "--init", "random"], "--init applies to --method splat only (got --method hashgrid)"),
    (["train", "@d", "--method", "splat", "--sampler", "uniform"], "--sampler applies to --method hashgrid, "),
    (["train", "@d", "--method", "splat", "--scene-type", "object"], "--scene-type applies to --method hashgrid"),
    (["train", "@d", "--method", "splat", "--appearance-dim", "4"], "--appearance-dim applies to --method "),
    (["convert", "@d", "--method", "mlp", "--n-gaussians", "5000"], "--n-gaussians applies to --method splat "
                                                                    "only (got --method mlp)"),
    (["convert", "@d", "--method", "splat", "--al"], "--al applies to --method hashgrid"),
    (["pde", "solve", "heat", "--solver", "pinn", "--experts", "8"], "--experts applies to --solver moe only "
                                                                     "(got --solver pinn)"),
    (["pde", "solve", "heat", "--solver", "causal", "--basis", "8"], "--basis applies to --solver moe only "),
    (["pde", "solve", "heat", "--solver", "insr", "--width", "8"], "--width applies to --solver causal, hard, moe, "
                                                                   "pig, pinn only (got --solver insr)"),
    (["pde", "solve", "heat", "--insr-dt", "0.1"], "--insr-dt applies to --solver insr only (got --solver pinn)"),
    (["pde", "solve", "heat", "--n-gaussians", "8"], "--n-gaussians applies to --method gaussian_embedding only "
                                                     "(got --method none)"),
    (["pde", "solve", "heat", "--method", "hashgrid", "--n-harmonics", "2"], "--n-harmonics applies to --method "
                                                                             "none only (got --method hashgrid)"),
]


@pytest.mark.parametrize("argv,message", NOT_APPLICABLE, ids=[" ".join(c[0][:1] + c[0][-2:]) for c in NOT_APPLICABLE])
def test_an_option_of_another_method_is_refused_in_one_line(argv, message, tmp_path, capsys):
    argv = [str(tmp_path / "data") if word == "@d" else word for word in argv]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"omnifield: error: {message}"), lines
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv", [
    ["train", "@d", "--method", "splat", "--sampler", "auto", "--compact"],  # a default value given: harmless
    ["pde", "solve", "heat", "--solver", "pig", "--n-gaussians", "8", "--steps", "0", "--lbfgs-steps", "0"],
])
def test_options_that_apply_pass_the_check(argv, tmp_path, capsys):
    argv = [str(tmp_path / "data") if word == "@d" else word for word in argv]
    main([*argv, "--out", str(tmp_path / "out")])  # fails later (no data) or runs; never on applicability
    assert "applies to" not in capsys.readouterr().err


def test_applicability_compares_with_the_parser_defaults():
    parser = argparse.ArgumentParser()
    parser.add_argument("--method", default="a")
    parser.add_argument("--size", type=int, default=3)
    parser.add_argument("--fast", action="store_true")
    declare_applicability(parser, {"size": {"a"}, "fast": {"b"}})
    refuse_inapplicable(parser.parse_args(["--size", "3", "--method", "b"]), "b")  # the default: not given
    refuse_inapplicable(parser.parse_args(["--fast", "--method", "b"]), "b")
    with pytest.raises(OmnifieldError, match=r"^--size applies to --method a only \(got --method b\)$"):
        refuse_inapplicable(parser.parse_args(["--size", "4"]), "b")
    with pytest.raises(OmnifieldError, match=r"^--fast applies to --method b only \(got --method a\)$"):
        refuse_inapplicable(parser.parse_args(["--fast"]), "a")


def test_an_unknown_method_is_named_before_applicability(tmp_path, capsys):
    assert main(["pde", "solve", "heat", "--method", "voxels", "--n-gaussians", "8", "--out", str(tmp_path)]) == 2
    assert "unknown field backend 'voxels'" in capsys.readouterr().err
