"""sklearn-mach: extreme classification with MACH, the scikit-learn way."""

from ._version import __version__
from .classifier import MACHClassifier
from .hashing import CountMinLabelHasher
from .network import MACHNetwork

__all__ = ["CountMinLabelHasher", "MACHClassifier", "MACHNetwork", "__version__"]
