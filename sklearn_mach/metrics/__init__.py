"""Ranking metrics of extreme classification, and scorers for model selection."""

from ._ranking import (
    get_scorer,
    get_scorer_names,
    label_propensities,
    make_at_k_scorer,
    ndcg_at_k,
    precision_at_k,
    psndcg_at_k,
    psprecision_at_k,
    recall_at_k,
    top_k_indices,
)

__all__ = [
    "get_scorer",
    "get_scorer_names",
    "label_propensities",
    "make_at_k_scorer",
    "ndcg_at_k",
    "precision_at_k",
    "psndcg_at_k",
    "psprecision_at_k",
    "recall_at_k",
    "top_k_indices",
]
