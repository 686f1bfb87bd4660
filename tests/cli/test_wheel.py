"""The package installs whole: a wheel built with `python -m build` runs from outside the checkout.

The fresh venv takes the wheel with ``--no-deps``; the third-party dependencies come from the
project venv's site-packages through a ``.pth`` line (the network stays at 127.0.0.1). A ``.pth``
in a directory added that way is not processed, so the editable install of the checkout is not
visible to the fresh venv: ``onchain`` there is the wheel's copy, which the test checks.
"""

from __future__ import annotations

import json
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from onchain.devnet.build import DevnetInfo

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.devnet]


def _build_wheel(out: Path) -> Path:
    """Build from a copy of the sources so the checkout gets no build/ or egg-info litter."""
    src = out.parent / "src"
    for name in ("pyproject.toml", "README.md"):
        src.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "onchain", src / "onchain", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(out),
            str(src),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    (wheel,) = out.glob("onchain-*.whl")
    return wheel


def _fresh_venv(where: Path, wheel: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True, timeout=300)
    py = where / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    purelib = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    deps = "\n".join(site.getsitepackages())
    (Path(purelib) / "project_deps.pth").write_text(deps + "\n")
    return where / "bin"


def test_built_wheel_installs_and_scans_the_devnet_from_outside_the_checkout(
    devnet: DevnetInfo, tmp_path: Path
) -> None:
    wheel = _build_wheel(tmp_path / "dist")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "onchain/contracts_abi/aave_v3/Pool.json",
        "onchain/contracts_abi/morpho_blue/Morpho.json",
        "onchain/migrations/env.py",
        "onchain/migrations/script.py.mako",
        "onchain/migrations/versions/0001_initial_schema.py",
        "onchain/devnet/solc_compile.js",
        "onchain/devnet/contracts/Multicall3.sol",
        "onchain/py.typed",
    ):
        assert needed in names, needed

    bin_dir = _fresh_venv(tmp_path / "venv", wheel)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    where = subprocess.run(
        [str(bin_dir / "python"), "-c", "import onchain; print(onchain.__file__)"],
        cwd=outside,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert where.startswith(str(tmp_path / "venv")), where

    scan = subprocess.run(
        [
            str(bin_dir / "onchain"),
            "scan",
            "--rpc",
            devnet.rpc_url,
            "--market",
            devnet.aave.addresses_provider,
            "--json",
        ],
        cwd=outside,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert scan.returncode == 0, scan.stderr
    rows = json.loads(scan.stdout)
    assert len(rows) == 300
    assert all(r["protocol"] == "aave-v3" for r in rows)

    # The migrations ship too: a fresh SQLite store is made from the installed package.
    db = outside / "snap.sqlite"
    upgrade = subprocess.run(
        [str(bin_dir / "onchain"), "db", "upgrade", "--db", f"sqlite:///{db}"],
        cwd=outside,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert upgrade.returncode == 0, upgrade.stderr
    assert db.exists() and db.stat().st_size > 0
