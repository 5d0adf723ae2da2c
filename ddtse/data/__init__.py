"""Data layer: Libri2Mix, dynamic mixing, extraction lists, speaker utterances, demo corpus, datamodule.

Importing this package registers the datasets in ``ddtse.registry.DATASETS``.
"""
from ddtse.data import clean_dirty, librimix, lists, mixing, speakers  # noqa: F401  (register datasets)
