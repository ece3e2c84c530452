"""Test-suite switches.

``SKLEARN_MACH_TEST_GROUPED=1`` runs every fit through the training path
that CUDA devices take, on the CPU, so that CI, which has no GPU, tests
that path too: repetitions trained in groups (one batched module per
group), :class:`~sklearn_mach.LazyAdam`'s sparse update without host
synchronisation, moments kept as computed (the CPU alone stores
subnormal moments as zeros), torch's own cross-entropy (the CPU alone
cuts tiny probabilities to 0), the input table's sparse gradient as
``embedding_bag`` gives it (the CPU alone sums it by row), and trained
weights copied back through a staging buffer, and predictions run on copies
of the networks kept for the device.  Tests that set these switches themselves
keep their own settings.
"""

import os

import pytest

import sklearn_mach._training as training
from sklearn_mach import MACHClassifier
from sklearn_mach._network import BucketLoss, MACHNetwork, _HostCopier
from sklearn_mach._optim import LazyAdam

GROUPED_ON_CPU = os.environ.get("SKLEARN_MACH_TEST_GROUPED") == "1"


@pytest.fixture(autouse=True)
def _cuda_paths_on_cpu(monkeypatch):
    if GROUPED_ON_CPU:
        monkeypatch.setattr(training, "_GROUPED_DEVICES", {"cpu", "cuda"})
        monkeypatch.setattr(LazyAdam, "_SYNC_FREE_DEVICES", {"cpu", "cuda"})
        monkeypatch.setattr(LazyAdam, "_FLUSH_DEVICES", set())
        monkeypatch.setattr(_HostCopier, "_STAGED_DEVICES", {"cpu", "cuda"})
        monkeypatch.setattr(BucketLoss, "_CUT_DEVICES", set())
        monkeypatch.setattr(MACHNetwork, "_ROW_SUM_DEVICES", set())
        monkeypatch.setattr(MACHClassifier, "_SHARED_DEVICES", set())


@pytest.fixture
def sorted_sizes(monkeypatch):
    """The sizes of the arrays numpy sorts while the test runs.

    Wraps ``np.unique``, ``np.setdiff1d``, ``np.sort`` and ``np.argsort``:
    a test at many classes asserts that none sorted all of them.
    """
    import numpy as np

    sizes = []
    for name in ("unique", "setdiff1d", "sort", "argsort"):
        original = getattr(np, name)
        monkeypatch.setattr(
            np,
            name,
            lambda a, *args, _f=original, **kw: (
                sizes.append(np.size(a)) or _f(a, *args, **kw)
            ),
        )
    return sizes


@pytest.fixture
def many_classes():
    """``many_classes(K)``: a tiny model declaring ``K`` classes
    (``partial_fit`` on 30 rows with ``classes=np.arange(K)``), and its X."""
    import numpy as np

    from sklearn_mach import MACHClassifier

    def build(n_classes):
        rng = np.random.RandomState(0)
        X = rng.randn(30, 4).astype(np.float32)
        clf = MACHClassifier(
            n_buckets=64, n_repetitions=2, hidden_layer_sizes=(), random_state=0
        ).partial_fit(X, rng.randint(0, n_classes, 30), classes=np.arange(n_classes))
        return clf, X

    return build
