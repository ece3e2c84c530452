"""The per-repetition network: a small MLP whose first layer reads sparse rows.

Each MACH repetition trains one of these to predict the ``B`` buckets of its
hash function.  The first layer is stored as an ``(n_features, width)``
table so that a sparse CSR batch is consumed directly as a weighted
``embedding_bag`` sum over its non-zeros: compute and gradient then scale
with the number of non-zeros, never with ``n_features``.
"""

import math

import torch
from torch import nn
from torch.nn import functional as F


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

    Notes
    -----
    ``forward`` accepts a dense ``(batch, n_features)`` tensor or a
    ``torch.sparse_csr`` tensor of that shape.  Any module that sets the
    class attribute ``supports_sparse_input = True`` is handed CSR batches
    by :class:`~sklearn_mach.MACHClassifier`; other modules get dense ones.
    """

    supports_sparse_input = True

    def __init__(
        self, n_features, n_outputs, hidden_layer_sizes=(256,), sparse_gradient=False
    ):
        super().__init__()
        widths = [int(w) for w in hidden_layer_sizes] + [int(n_outputs)]
        self.sparse_gradient = sparse_gradient
        self.input_weight = nn.Parameter(torch.empty(n_features, widths[0]))
        self.input_bias = nn.Parameter(torch.empty(widths[0]))
        layers = []
        for fan_in, fan_out in zip(widths[:-1], widths[1:]):
            layers += [nn.ReLU(), nn.Linear(fan_in, fan_out)]
        self.layers = nn.Sequential(*layers)
        self.reset_parameters()

    def reset_parameters(self):
        """Initialise the input table like ``nn.Linear`` (uniform, 1/sqrt(fan_in))."""
        bound = 1.0 / math.sqrt(max(1, self.input_weight.shape[0]))
        nn.init.uniform_(self.input_weight, -bound, bound)
        nn.init.uniform_(self.input_bias, -bound, bound)
        for layer in self.layers:
            if isinstance(layer, nn.Linear):
                layer.reset_parameters()

    def forward(self, X):
        if X.layout == torch.sparse_csr:
            hidden = F.embedding_bag(
                X.col_indices(),
                self.input_weight,
                X.crow_indices(),
                mode="sum",
                per_sample_weights=X.values(),
                include_last_offset=True,
                sparse=self.sparse_gradient,
            )
        else:
            hidden = X @ self.input_weight
        return self.layers(hidden + self.input_bias)
