"""The release wheel: built by maturin, installed where no Rust toolchain exists, imported."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_abi3_wheel_installs_and_imports_without_rust(tmp_path: Path) -> None:
    out = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "maturin", "build", "--release", "--out", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("*.whl")
    # One wheel for every CPython from 3.11 on.
    assert "-cp311-abi3-" in wheel.name
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    assert "electric_trio/_native.abi3.so" in names
    assert "electric_trio/py.typed" in names
    assert "electric_trio/_native.pyi" in names

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # No cargo, rustc or compiler on the PATH: the wheel must not need them.
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root")}
    assert subprocess.run(["which", "cargo"], env=env, capture_output=True).returncode != 0
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", str(wheel)],
        env=env,
        check=True,
        capture_output=True,
    )
    probe = (
        "import electric_trio, electric_trio._native as n;"
        "print(electric_trio.__version__, n.decode_text_value(23, b'42'));"
        "print(n.__file__)"
    )
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe],
        env=env,
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
    )
    version, value = result.stdout.splitlines()[0].split()
    assert value == "42"
    assert version == electric_trio_version()
    assert str(venv) in result.stdout.splitlines()[1]
    # The console script is installed too.
    assert (venv / "bin" / "electric-trio").exists()


def electric_trio_version() -> str:
    import electric_trio

    return electric_trio.__version__
