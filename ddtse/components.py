"""The built-in components: which packages register the models, systems, datasets and item sources.

``ddtse/__init__.py`` installs ``load`` as the registries' loader (``ddtse.registry.install_loader``),
so a registry imports nothing above it and the first lookup of a kind imports only the packages
that fill that kind (scoring a list does not import the Lightning systems).
"""
from __future__ import annotations

import importlib

#: registry kind -> the packages whose modules register its built-in entries
PACKAGES = {
    "model": ("ddtse.models",),
    "system": ("ddtse.systems",),
    "dataset": ("ddtse.data",),
    "item source": ("ddtse.data",),
}


def load(kind: str) -> None:
    """Import the packages that register the built-in entries of registry ``kind``."""
    for package in PACKAGES.get(kind, ()):
        importlib.import_module(package)
