"""Packages: selfplay and envs as found, plus conf/ shipped inside the package as selfplay/conf.

Everything else is in pyproject.toml. setuptools cannot rename a folder into a package from
pyproject alone, hence this file: a non-editable install then has the Hydra configs
(selfplay.cli falls back to them when the repository's conf/ is not there).
"""

from pathlib import Path

from setuptools import find_packages, setup

CONF_PACKAGES = ["selfplay.conf"] + sorted(
    f"selfplay.conf.{d.name}" for d in Path(__file__).resolve().parent.joinpath("conf").iterdir()
    if d.is_dir() and not d.name.startswith((".", "_"))
)

setup(
    packages=find_packages(include=["selfplay*", "envs*"]) + CONF_PACKAGES,
    package_dir={"selfplay.conf": "conf"},
)
