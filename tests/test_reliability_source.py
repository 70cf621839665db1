"""Nothing in the package unpickles a file: a scan of the source for unsafe loaders."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "omnifield"


def _keyword(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return None


def _is_true(node) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def unsafe_loads(source: str) -> list[tuple[int, str]]:
    """``(line, reason)`` for every pickle import/use, ``torch.load`` without ``weights_only=True``,
    and ``np.load``/``numpy.load`` with ``allow_pickle`` not literally ``False``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] in ("pickle", "cPickle", "dill", "joblib")
                                                for a in node.names):
            found.append((node.lineno, "imports a pickle module"))
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("pickle", "dill", "joblib"):
            found.append((node.lineno, "imports from a pickle module"))
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner = node.func.value
        owner_name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", "")
        attr = node.func.attr
        if owner_name == "torch" and attr == "load" and not _is_true(_keyword(node, "weights_only")):
            found.append((node.lineno, "torch.load without weights_only=True"))
        if owner_name in ("np", "numpy") and attr == "load":
            flag = _keyword(node, "allow_pickle")
            if flag is not None and not (isinstance(flag, ast.Constant) and flag.value is False):
                found.append((node.lineno, "np.load with allow_pickle"))
        if owner_name in ("pickle", "torch") and attr in ("loads", "Unpickler"):
            found.append((node.lineno, f"{owner_name}.{attr}"))
        if attr in ("read_pickle",):
            found.append((node.lineno, "pandas.read_pickle"))
    return found


def test_scanner_catches_each_unsafe_pattern():
    bad = (
        "import pickle\n"
        "from joblib import load\n"
        "torch.load(p)\n"
        "torch.load(p, weights_only=False)\n"
        "np.load(p, allow_pickle=True)\n"
        "numpy.load(p, allow_pickle=flag)\n"
        "pickle.loads(b)\n"
    )
    assert [line for line, _ in unsafe_loads(bad)] == [1, 2, 3, 4, 5, 6, 7]
    good = "torch.load(p, weights_only=True)\nnp.load(p)\nnp.load(p, allow_pickle=False)\n"
    assert unsafe_loads(good) == []


def test_package_has_no_unsafe_loader():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 20
    offenders = [f"{path.relative_to(PACKAGE.parent)}:{line}: {reason}"
                 for path in files for line, reason in unsafe_loads(path.read_text())]
    assert offenders == []
