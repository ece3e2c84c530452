"""The per-repetition network: a small MLP whose first layer reads sparse rows.

Each MACH repetition trains one of these to predict the ``B`` buckets of its
hash function.  The first layer is stored as an ``(n_features, width)``
table so that a sparse CSR batch is consumed directly as a weighted
``embedding_bag`` sum over its non-zeros: compute and gradient then scale
with the number of non-zeros, never with ``n_features``.
"""

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .hashing import HASH_PRIME, universal_hash


class MACHNetwork(nn.Module):
    """Feed-forward network mapping a feature row to ``n_outputs`` bucket logits.

    Parameters
    ----------
    n_features : int
        Number of input features.
    n_outputs : int
        Number of outputs (the ``B`` buckets of one repetition).
    hidden_layer_sizes : tuple of int, default=(256,)
        Width of each hidden layer (ReLU activations).  Empty means a linear
        model.
    sparse_gradient : bool, default=False
        Make the gradient of the input table sparse when the batch is sparse
        (only the rows of features present in the batch), for optimizers
        that accept sparse gradients such as :class:`~sklearn_mach.optim.LazyAdam`.
    n_hashed_features : int, default=None
        Hash the ``n_features`` input features into this many rows of the
        input table (features sharing a row share its weights), with a
        2-universal hash drawn from ``feature_seed``.  ``None`` keeps one row
        per feature.
    feature_seed : int, default=0
        Seed of the feature hash; MACH uses a different one per repetition,
        so features colliding in one network are apart in the others.

    Notes
    -----
    ``forward`` accepts a dense ``(batch, n_features)`` tensor or a
    ``torch.sparse_csr`` tensor of that shape.  Any module that sets the
    class attribute ``supports_sparse_input = True`` is handed CSR batches
    by :class:`~sklearn_mach.MACHClassifier`; other modules get dense ones.
    """

    supports_sparse_input = True

    def __init__(
        self,
        n_features,
        n_outputs,
        hidden_layer_sizes=(256,),
        sparse_gradient=False,
        n_hashed_features=None,
        feature_seed=0,
    ):
        super().__init__()
        widths = [int(w) for w in hidden_layer_sizes] + [int(n_outputs)]
        self.init_kwargs = dict(
            n_features=int(n_features),
            n_outputs=int(n_outputs),
            hidden_layer_sizes=tuple(int(w) for w in hidden_layer_sizes),
            sparse_gradient=bool(sparse_gradient),
            n_hashed_features=None if n_hashed_features is None else int(n_hashed_features),
            feature_seed=int(feature_seed),
        )
        self.sparse_gradient = sparse_gradient
        n_rows = n_features
        if n_hashed_features is not None:
            rng = np.random.RandomState(feature_seed)
            a = rng.randint(1, HASH_PRIME, size=1, dtype=np.int64)
            b = rng.randint(0, HASH_PRIME, size=1, dtype=np.int64)
            rows = universal_hash(np.arange(n_features), a, b, n_hashed_features)[0]
            # Derived from feature_seed: rebuilt on load, never saved.
            self.register_buffer(
                "feature_rows",
                torch.from_numpy(rows.astype(np.int64)),
                persistent=False,
            )
            n_rows = n_hashed_features
        else:
            self.feature_rows = None
        self.input_weight = nn.Parameter(torch.empty(n_rows, widths[0]))
        self.input_bias = nn.Parameter(torch.empty(widths[0]))
        layers = []
        for fan_in, fan_out in zip(widths[:-1], widths[1:]):
            layers += [nn.ReLU(), nn.Linear(fan_in, fan_out)]
        self.layers = nn.Sequential(*layers)
        self.reset_parameters()

    def reset_parameters(self):
        """Initialise the input table like ``nn.Linear`` (uniform, 1/sqrt(fan_in))."""
        bound = 1.0 / math.sqrt(max(1, self.init_kwargs["n_features"]))
        nn.init.uniform_(self.input_weight, -bound, bound)
        nn.init.uniform_(self.input_bias, -bound, bound)
        for layer in self.layers:
            if isinstance(layer, nn.Linear):
                layer.reset_parameters()

    def forward(self, X):
        if X.layout == torch.sparse_csr:
            columns = X.col_indices()
            if self.feature_rows is not None:
                columns = self.feature_rows[columns]
            hidden = F.embedding_bag(
                columns,
                self.input_weight,
                X.crow_indices(),
                mode="sum",
                per_sample_weights=X.values(),
                include_last_offset=True,
                sparse=self.sparse_gradient,
            )
        elif self.feature_rows is not None:
            hidden = X @ self.input_weight[self.feature_rows]
        else:
            hidden = X @ self.input_weight
        return self.layers(hidden + self.input_bias)
