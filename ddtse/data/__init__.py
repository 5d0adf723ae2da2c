"""Data layer: Libri2Mix, dynamic mixing, extraction lists, demo corpus, datamodule.

Importing this package registers the datasets in ``ddtse.registry.DATASETS``.
"""
from ddtse.data import clean_dirty, librimix, lists, mixing  # noqa: F401  (register datasets)
