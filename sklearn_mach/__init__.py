"""sklearn-mach: extreme classification with MACH, the scikit-learn way.

The estimators live at the top level; ``sklearn_mach.metrics`` and
``sklearn_mach.datasets`` are public submodules, imported on first access
(as in scikit-learn).  Modules whose names start with an underscore are
private.
"""

import importlib

from ._classifier import MACHClassifier
from ._hashing import CountMinLabelHasher
from ._network import MACHNetwork
from ._optim import LazyAdam
from ._persistence import get_untrusted_types
from ._version import __version__

_submodules = ["datasets", "metrics"]

__all__ = [
    "CountMinLabelHasher",
    "LazyAdam",
    "MACHClassifier",
    "MACHNetwork",
    "__version__",
    "get_untrusted_types",
    *_submodules,
]


def __dir__():
    return __all__


def __getattr__(name):
    if name in _submodules:
        return importlib.import_module(f"sklearn_mach.{name}")
    raise AttributeError(f"module 'sklearn_mach' has no attribute {name!r}")
