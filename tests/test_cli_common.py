"""Options every command shares: ``--threads`` and ``--quiet``."""

from __future__ import annotations

import os

import pytest
import torch

from omnifield.cli import _leaf_parsers, build_parser, main


def test_every_command_takes_threads_and_quiet():
    leaves = _leaf_parsers(build_parser())
    assert len(leaves) >= 20
    for parser in leaves:
        options = {o for action in parser._actions for o in action.option_strings}
        assert {"--threads", "--quiet"} <= options, parser.prog


def test_threads_and_quiet_hold_for_the_command_only(monkeypatch, capsys):
    seen = {}

    def probe(args):
        from tqdm import tqdm

        seen.update(threads=torch.get_num_threads(), quiet=tqdm(total=3).disable)
        return 0

    parser = build_parser()
    monkeypatch.setattr("omnifield.cli.build_parser", lambda: parser)
    export_mesh = next(p for p in _leaf_parsers(parser) if p.prog.endswith("export mesh"))
    export_mesh.set_defaults(func=probe)
    threads_before = torch.get_num_threads()
    assert main(["export", "mesh", "RUN", "--threads", "1", "--quiet"]) == 0
    assert seen == {"threads": 1, "quiet": True}
    assert torch.get_num_threads() == threads_before
    from tqdm import tqdm

    assert not tqdm(total=3, file=open(os.devnull, "w")).disable  # bars are back after the command


@pytest.mark.parametrize("value", ["0", "-2"])
def test_threads_below_one_is_refused(value, capsys):
    assert main(["export", "mesh", "RUN", "--threads", value]) == 2
    assert "--threads must be >= 1" in capsys.readouterr().err


def test_method_is_the_backend_option_and_old_names_say_so(capsys):
    parser = build_parser()
    new = parser.parse_args(["convert", "RUN", "--method", "mlp"])
    old = parser.parse_args(["convert", "RUN", "--to", "mlp"])
    assert new.method == old.method == "mlp"
    assert "--to is the old name of --method; use --method" in capsys.readouterr().err
    assert main(["convert", "RUN"]) == 2
    assert "--method is required" in capsys.readouterr().err
