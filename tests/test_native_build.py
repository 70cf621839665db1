"""Building the native kernels: an interrupted first compile is cleared and rebuilt, a compile in another process
is waited for with one line (and not forever), the build key does not depend on which ninja is on PATH, and
without a C++ compiler the native parity tests skip instead of failing."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
import types
from pathlib import Path

import pytest

import omnifield.native as native

FAMILY = "sh_basis"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def fake_compile(tmp_path, monkeypatch):
    """A private kernel cache and a stand-in for torch's compile that, like torch's, cannot get past its own
    ``lock`` file (it would wait forever); the 'library' it builds is a small Python module."""
    import torch.utils.cpp_extension as cpp_extension

    monkeypatch.setenv("OMNIFIELD_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("OMNIFIELD_BACKEND", raising=False)
    monkeypatch.setattr(native, "_compiler", lambda: ("/usr/bin/c++", "c++ (test) 1.0"))
    native.load_native.cache_clear()
    calls = []

    def load(name, sources, build_directory, **kwargs):
        folder = Path(build_directory)
        if (folder / "lock").exists():
            raise AssertionError("torch's build lock is still there: the compile would wait forever")
        calls.append(folder)
        library = folder / f"{name}.py"
        library.write_text("BUILT = True\n")
        return types.SimpleNamespace(__file__=str(library))

    monkeypatch.setattr(cpp_extension, "load", load)
    yield calls
    native.load_native.cache_clear()


def _folder() -> Path:
    return native.cache_dir() / f"{FAMILY}-{native.build_key(FAMILY)}"


def test_a_compile_killed_midway_is_cleared_rebuilt_and_said(fake_compile, capsys):
    folder = _folder()
    folder.mkdir(parents=True)
    (folder / "lock").touch()  # what torch's compile leaves when killed, with a half-written object file
    (folder / f"{FAMILY}.o").write_bytes(b"\x7fELF partial")
    folder.with_name(folder.name + ".lock").write_text("2147480000 buildhost\n")  # its owner, long gone

    module = native.load_native(FAMILY)
    assert module is not None and fake_compile == [folder]
    err = capsys.readouterr().err
    assert "removing an unfinished build" in err and "(left by pid 2147480000, which stopped" in err
    assert f"compiling native kernels {FAMILY} (first use, about a minute)" in err
    assert not (folder / "lock").exists() and not (folder / f"{FAMILY}.o").exists()

    # the next process imports the finished build directly: no compile, nothing printed
    native.load_native.cache_clear()
    assert native.load_native(FAMILY).BUILT and fake_compile == [folder]
    assert capsys.readouterr().err == ""


def _hold_lock(folder: Path, holder: str) -> int:
    fd = os.open(folder.with_name(folder.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.pwrite(fd, holder.encode(), 0)
    return fd


def test_a_compile_in_another_process_is_waited_for_with_one_line(fake_compile, capsys, monkeypatch):
    folder = _folder()
    folder.parent.mkdir(parents=True)
    fd = _hold_lock(folder, "4242 otherhost\n")
    timer = threading.Timer(1.0, os.close, (fd,))  # the other process finishes (without a result) after 1 s
    timer.start()
    try:
        assert native.load_native(FAMILY) is not None
    finally:
        timer.join()
    err = capsys.readouterr().err
    assert err.count(f"waiting for another process compiling native kernels {FAMILY} (pid 4242)") == 1
    assert fake_compile == [folder]


def test_a_hung_compile_elsewhere_is_not_waited_for_forever(fake_compile, capsys, monkeypatch):
    folder = _folder()
    folder.parent.mkdir(parents=True)
    fd = _hold_lock(folder, "4243 otherhost\n")
    monkeypatch.setattr(native, "WAIT_LIMIT_S", 0.5)
    try:
        with pytest.warns(RuntimeWarning, match="gave up waiting"):
            assert native.load_native(FAMILY) is None
    finally:
        os.close(fd)
    assert "(pid 4243)" in capsys.readouterr().err and fake_compile == []
    assert "gave up waiting" in native.unavailable_reason(FAMILY)


def test_build_key_ignores_ninja_and_paths_but_not_flags(tmp_path, monkeypatch):
    key = native.build_key(FAMILY)
    other_ninja = tmp_path / "bin"
    other_ninja.mkdir()
    (other_ninja / "ninja").write_text("#!/bin/sh\necho 1.10.0\n")
    (other_ninja / "ninja").chmod(0o755)
    monkeypatch.setenv("PATH", f"{other_ninja}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(tmp_path)
    assert native.build_key(FAMILY) == key
    monkeypatch.setattr(native, "CFLAGS", (*native.CFLAGS, "-DOTHER"))
    assert native.build_key(FAMILY) != key


def test_without_a_compiler_native_parity_tests_skip_saying_why(tmp_path):
    """The native-vs-twin tests of every kernel family, with ``c++`` missing: skipped, none failed."""
    env = {**os.environ, "CXX": str(tmp_path / "no-such-c++"), "OMNIFIELD_CACHE": str(tmp_path / "cache"),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("OMNIFIELD_BACKEND", None)
    files = ["tests/test_hashgrid.py", "tests/test_native_raymarch.py", "tests/test_sh.py",
             "tests/test_splat_rasterizer.py", "tests/test_splat_field.py", "tests/test_backends.py"]
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-k", "native",
                           *files], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert " failed" not in proc.stdout and " skipped" in proc.stdout
    assert "no C++ compiler" in proc.stdout  # the skip reason


def test_compiling_shows_a_spinner_on_a_terminal(monkeypatch):
    """On a terminal the compile line counts seconds in place; the end line says how long it took."""
    import io
    import time

    import omnifield.native as native

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    screen = Terminal()
    monkeypatch.setattr(native.sys, "stderr", screen)
    with native._compiling("demo"):
        time.sleep(0.8)
    text = screen.getvalue()
    assert "\romnifield: compiling native kernels demo (first use, about a minute) " in text
    assert text.rstrip().endswith("s") and "compiled native kernels demo in " in text
