"""Datasets (importing a module registers it in DATASETS)."""
from ddtse.data import clean_dirty  # noqa: F401
