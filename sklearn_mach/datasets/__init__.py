"""Data for extreme classification: the field's file formats and a generator."""

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
    "load_svmlight_multilabel",
    "load_xc_repository",
    "make_extreme_classification",
]
