import numpy as np
import pytest
import scipy.sparse as sp

from sklearn_mach.metrics import precision_at_k, top_k_indices


def test_precision_at_k_divides_by_k():
    Y = np.array([[1, 0, 0, 0], [0, 1, 1, 0]])
    scores = np.array([[0.9, 0.8, 0.1, 0.0], [0.1, 0.9, 0.2, 0.8]])
    assert precision_at_k(Y, scores, k=1) == pytest.approx((1 + 1) / 2)
    # Sample 0 has one label: its P@3 is 1/3, not 1 (no min(|y|, k) variant).
    assert precision_at_k(Y, scores, k=3) == pytest.approx((1 / 3 + 2 / 3) / 2)
    assert precision_at_k(sp.csr_matrix(Y), scores, k=3) == pytest.approx(0.5)


def test_top_k_indices_are_sorted():
    scores = np.array([[0.1, 0.5, 0.3, 0.9]])
    np.testing.assert_array_equal(top_k_indices(scores, 3), [[3, 1, 2]])
    np.testing.assert_array_equal(top_k_indices(scores, 10), [[3, 1, 2, 0]])


def test_shape_mismatch():
    with pytest.raises(ValueError, match="samples"):
        precision_at_k(np.ones((2, 3)), np.ones((3, 3)))
