"""Test-suite switches.

``SKLEARN_MACH_TEST_GROUPED=1`` runs every fit through the grouped training
path that CUDA devices take (one batched module per group of repetitions)
on the CPU, so that CI, which has no GPU, tests that path too.
"""

import os

import pytest

import sklearn_mach._training as training

GROUPED_ON_CPU = os.environ.get("SKLEARN_MACH_TEST_GROUPED") == "1"


@pytest.fixture(autouse=True)
def _grouped_training_on_cpu(monkeypatch):
    if GROUPED_ON_CPU:
        monkeypatch.setattr(training, "_GROUPED_DEVICES", {"cpu", "cuda"})
