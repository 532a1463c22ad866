"""Packages: everything under mmdiff/, plus the top-level conf/ and recipes/ shipped as mmdiff._configs.*
(mapped in pyproject.toml's [tool.setuptools.package-dir]). pyproject.toml holds all other metadata."""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["mmdiff", "mmdiff.*"]), "mmdiff._configs.conf", "mmdiff._configs.recipes"])
