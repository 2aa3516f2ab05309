"""Map the repo's top-level config/ and examples/ into the wheel as package data.

`config/` stays the one editable source the repo shows; in a wheel (and from an sdist)
it becomes `monitor/_config`, which monitor.paths finds. The mapping and data globs are in
pyproject.toml; only the package list needs code.
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=[*find_namespace_packages(include=["monitor*"]), "monitor._config", "monitor._examples"],
)
