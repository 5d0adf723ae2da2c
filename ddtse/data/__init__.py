"""Data layer: Libri2Mix, dynamic mixing, extraction lists, demo corpus, datamodule.

Importing this package registers the datasets in ``ddtse.registry.DATASETS``.
"""
import importlib.util

from ddtse.data import librimix, lists, mixing  # noqa: F401  (register datasets)

if importlib.util.find_spec("ddtse.data.clean_dirty") is not None:
    from ddtse.data import clean_dirty  # noqa: F401
