"""The import contracts of pyproject.toml ([tool.importlinter]): library layers never import the apps or the
CLI, fields import no layer above them, and the apps form no cycles. Runs import-linter over the package.
Also: each library package's ``__all__`` names exist, and the lazily exporting packages import nothing on import."""

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ["fields", "renderers", "data", "io", "losses", "distill", "pde"]
LAZY = ["renderers", "data", "io", "distill", "pde"]
LINT = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True, no_logo=True))"


def _python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def test_import_contracts_are_kept():
    done = _python(LINT)
    assert done.returncode == 0, f"import contracts broken:\n{done.stdout}\n{done.stderr}"
    assert "0 broken" in done.stdout and "BROKEN" not in done.stdout


@pytest.mark.parametrize("package", LIBRARY)
def test_every_exported_name_exists_and_is_documented(package):
    module = importlib.import_module(f"omnifield.{package}")
    assert module.__all__ == sorted(set(module.__all__)), "__all__ sorted, no repeats"
    values = {name: getattr(module, name) for name in module.__all__}  # AttributeError names a missing one
    undocumented = [n for n, v in values.items() if callable(v) and not (v.__doc__ or "").strip()]
    assert undocumented == []
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        module.not_a_name  # noqa: B018


def test_lazy_packages_import_none_of_their_modules_until_asked():
    code = ("import sys; import " + ", ".join(f"omnifield.{p}" for p in LAZY) +
            "; print(sorted(m for m in sys.modules if m.count('.') > 1 and m.startswith('omnifield.')))")
    done = _python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    done = _python("import sys; from omnifield.renderers import Cameras; print('omnifield.renderers.volume' in "
                   "sys.modules, Cameras.__module__)")
    assert done.stdout.split() == ["False", "omnifield.renderers.cameras"], done.stderr
