"""Test-suite switches.

``SKLEARN_MACH_TEST_GROUPED=1`` in the environment runs every fit and
prediction through the paths that CUDA devices take, on the CPU, so that
CI, which has no GPU, tests them too: repetitions trained in groups (one
batched module per group), :class:`~sklearn_mach.LazyAdam`'s sparse
update without host synchronisation, moments kept as computed (the CPU
alone stores subnormal moments as zeros), torch's own cross-entropy (the
CPU alone cuts tiny probabilities to 0), the input table's sparse gradient
as ``embedding_bag`` gives it (the CPU alone sums it by row), trained
weights copied back through a staging buffer, predictions on copies of the
networks kept for the device, in batches of 2048 rows, and decoding by
whole rows of scores without pruning.  The library reads the variable when
it is imported (``sklearn_mach._device.ACCELERATOR_PATHS_ON_CPU``), so
the worker processes of loky and Dask, which inherit the environment, take
the same paths.  Tests that set a path's devices themselves keep their own
settings.
"""

import pytest


@pytest.fixture
def cpu_decoding(monkeypatch):
    """Decoding the CPU's way (pruned exact top-k, class chunks, capped
    blocks of scores) in both runs: for the tests of those paths, which
    ``SKLEARN_MACH_TEST_GROUPED=1`` replaces with a GPU's whole rows."""
    from sklearn_mach import _decoding

    monkeypatch.setattr(_decoding, "_CPU_DEVICES", {"cpu"})


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
