"""Test-suite switches.

``SKLEARN_MACH_TEST_GROUPED=1`` runs every fit through the training path
that CUDA devices take, on the CPU, so that CI, which has no GPU, tests
that path too: repetitions trained in groups (one batched module per
group), :class:`~sklearn_mach.LazyAdam`'s sparse update without host
synchronisation, moments kept as computed (the CPU alone stores
subnormal moments as zeros), torch's own cross-entropy (the CPU alone
cuts tiny probabilities to 0), the input table's sparse gradient as
``embedding_bag`` gives it (the CPU alone sums it by row), and trained
weights copied back through a staging buffer.  Tests that set these switches themselves
keep their own settings.
"""

import os

import pytest

import sklearn_mach._training as training
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
