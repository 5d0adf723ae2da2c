"""Data layer: Libri2Mix, dynamic mixing, extraction lists, speaker utterances, demo corpus, datamodule.

Importing this package registers the datasets in ``ddtse.registry.DATASETS`` and the item sources
in ``ddtse.registry.SOURCES`` (a new data format: its module, and one import line here).
"""
from ddtse.data import clean_dirty, librimix, lists, mixing, speakers  # noqa: F401  (register datasets)
from ddtse.data import items  # noqa: F401  (registers the pair, folder, list and folders sources)
