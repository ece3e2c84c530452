"""Data for extreme classification: file formats, a generator, the data folder."""

from ._base import get_data_home
from ._loaders import (
    dump_svmlight_multilabel,
    dump_xc_repository,
    load_svmlight_multilabel,
    load_xc_repository,
)
from ._synthetic import make_extreme_classification

__all__ = [
    "dump_svmlight_multilabel",
    "dump_xc_repository",
    "get_data_home",
    "load_svmlight_multilabel",
    "load_xc_repository",
    "make_extreme_classification",
]
