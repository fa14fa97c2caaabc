"""A built wheel ships conf/ as selfplay/conf, and the command finds it when no repository is
around (a non-editable install)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_wheel_ships_the_configs_and_the_command_composes_from_them(tmp_path: Path):
    source = tmp_path / "source"  # a copy, so the build leaves nothing in the working tree
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        if (REPO / name).exists():
            shutil.copy(REPO / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("selfplay", "envs", "conf"):
        shutil.copytree(REPO / name, source / name, ignore=ignore)
    subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps",
                    "--no-build-isolation", "-q", "-w", str(tmp_path / "dist")],
                   cwd=source, check=True, capture_output=True, timeout=120)
    (wheel,) = (tmp_path / "dist").glob("selfplay-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = {f"selfplay/conf/{p.relative_to(REPO / 'conf').as_posix()}"
              for p in (REPO / "conf").rglob("*.yaml")}
    assert wanted and wanted <= names, sorted(wanted - names)
    assert "selfplay/cli.py" in names and "envs/registration.py" in names

    # The wheel's files alone (as site-packages would hold them), run from elsewhere.
    installed = tmp_path / "installed"
    zipfile.ZipFile(wheel).extractall(installed)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(installed)}
    found = subprocess.run([sys.executable, "-c", "import selfplay.cli as c; print(c.CONF_DIR)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60)
    assert found.stdout.strip() == str(installed / "selfplay" / "conf"), found.stderr
    composed = subprocess.run([sys.executable, "-m", "selfplay.cli", "train", "--cfg", "job",
                               "env=connect_four"], cwd=elsewhere, env=env,
                              capture_output=True, text=True, timeout=60)
    assert composed.returncode == 0, composed.stderr[-2000:]
    assert "selfplay/ConnectFour-v0" in composed.stdout
