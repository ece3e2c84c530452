"""The per-repetition network: a small MLP whose first layer reads sparse rows.

Each MACH repetition trains one of these to predict the ``B`` buckets of its
hash function.  The first layer is stored as an ``(n_features, width)``
table so that a sparse CSR batch is consumed directly as a weighted
``embedding_bag`` sum over its non-zeros: compute and gradient then scale
with the number of non-zeros, never with ``n_features``.
"""

import copy
import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ._hashing import draw_tables, tabulation_hash


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
        that accept sparse gradients such as :class:`~sklearn_mach._optim.LazyAdam`.
    n_hashed_features : int, default=None
        Hash the ``n_features`` input features into this many rows of the
        input table (features sharing a row share its weights), with a
        tabulation hash drawn from ``feature_seed``.  ``None`` keeps one row
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
            rows = tabulation_hash(
                np.arange(n_features), draw_tables(feature_seed, 1), n_hashed_features
            )[0]
            # Saved with the weights: a stored model keeps its feature map.
            self.register_buffer("feature_rows", torch.from_numpy(rows.astype(np.int64)))
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


class GroupedMACHNetwork(nn.Module):
    """``G`` MACHNetworks of identical shapes evaluated as one module.

    Parameters
    ----------
    networks : list of MACHNetwork
        The networks to stack (their weights are copied).  They must share
        their constructor arguments except the feature hash seed.

    Notes
    -----
    ``forward`` returns logits of shape ``(G, batch, n_outputs)``.
    """

    supports_sparse_input = True

    def __init__(self, networks):
        super().__init__()
        shapes = {
            tuple(p.shape for p in net.parameters()) for net in networks
        }
        if len(shapes) != 1 or not all(isinstance(n, MACHNetwork) for n in networks):
            raise ValueError("GroupedMACHNetwork needs MACHNetworks of identical shapes.")
        self.templates = [copy.deepcopy(net.init_kwargs) for net in networks]
        self.sparse_gradient = networks[0].sparse_gradient
        self.input_weight = nn.Parameter(
            torch.stack([n.input_weight.detach() for n in networks]).clone()
        )
        self.input_bias = nn.Parameter(
            torch.stack([n.input_bias.detach() for n in networks]).clone()
        )
        linears = [
            [m for m in n.layers if isinstance(m, nn.Linear)] for n in networks
        ]
        self.weights = nn.ParameterList(
            nn.Parameter(torch.stack([ls[i].weight.detach().T for ls in linears]).clone())
            for i in range(len(linears[0]))
        )
        self.biases = nn.ParameterList(
            nn.Parameter(torch.stack([ls[i].bias.detach() for ls in linears]).clone())
            for i in range(len(linears[0]))
        )
        if networks[0].feature_rows is not None:
            self.register_buffer(
                "feature_rows",
                torch.stack([n.feature_rows for n in networks]),
                persistent=False,
            )
        else:
            self.feature_rows = None

    def forward(self, X):
        n_groups, n_rows, width = self.input_weight.shape
        if X.layout == torch.sparse_csr:
            columns = X.col_indices()
            nnz = columns.shape[0]
            if self.feature_rows is not None:
                rows = self.feature_rows[:, columns]
            else:
                rows = columns.expand(n_groups, nnz)
            shift = torch.arange(n_groups, device=columns.device)[:, None]
            crow = X.crow_indices()
            offsets = torch.cat(
                [(crow[:-1] + g * nnz) for g in range(n_groups)]
                + [crow[-1:] + (n_groups - 1) * nnz]
            )
            hidden = F.embedding_bag(
                (rows + shift * n_rows).reshape(-1),
                self.input_weight.reshape(n_groups * n_rows, width),
                offsets,
                mode="sum",
                per_sample_weights=X.values().repeat(n_groups),
                include_last_offset=True,
                sparse=self.sparse_gradient,
            ).view(n_groups, -1, width)
        else:
            weight = self.input_weight
            if self.feature_rows is not None:
                weight = torch.stack(
                    [weight[g, self.feature_rows[g]] for g in range(n_groups)]
                )
            hidden = torch.matmul(X, weight)
        hidden = hidden + self.input_bias[:, None, :]
        for weight, bias in zip(self.weights, self.biases):
            hidden = torch.baddbmm(bias[:, None, :], torch.relu(hidden), weight)
        return hidden

    def split(self):
        """The ``G`` trained networks as separate MACHNetworks on the CPU."""
        networks = []
        for g, kwargs in enumerate(self.templates):
            with torch.random.fork_rng(devices=[]):
                net = MACHNetwork(**kwargs)
            linears = [m for m in net.layers if isinstance(m, nn.Linear)]
            with torch.no_grad():
                net.input_weight.copy_(self.input_weight[g])
                net.input_bias.copy_(self.input_bias[g])
                for linear, weight, bias in zip(linears, self.weights, self.biases):
                    linear.weight.copy_(weight[g].T)
                    linear.bias.copy_(bias[g])
            networks.append(net.to("cpu").eval())
        return networks


class GroupedLoss(nn.Module):
    """Sum over the groups of each network's own mean loss.

    Summing (not averaging) makes every network's gradient exactly the one
    it would get if trained alone on the batch.

    Parameters
    ----------
    multilabel : bool
        BCE-with-logits over multi-hot bucket targets of shape
        ``(batch, G * n_outputs)``; else cross-entropy over bucket ids of
        shape ``(batch, G)``.
    """

    def __init__(self, multilabel=False):
        super().__init__()
        self.multilabel = multilabel

    def forward(self, logits, targets):
        n_groups, batch, n_outputs = logits.shape
        if self.multilabel:
            targets = targets.view(batch, n_groups, n_outputs).transpose(0, 1)
            loss = F.binary_cross_entropy_with_logits(logits, targets)
        else:
            loss = F.cross_entropy(
                logits.reshape(-1, n_outputs), targets.T.reshape(-1)
            )
        return loss * n_groups
