"""Several repetitions' networks as one batched module, for GPU training.

Training ``R`` small networks one after another leaves a GPU mostly idle.
:class:`GroupedMACHNetwork` stacks the weights of ``G`` independent
:class:`~sklearn_mach.network.MACHNetwork` modules along a leading group
axis and evaluates all of them with one ``embedding_bag`` and one batched
matmul (``baddbmm``) per layer.  The weights stay independent: the output of
group ``g`` depends only on the weights of network ``g``, so training the
group on a batch is mathematically the same as training each network on it.
:meth:`GroupedMACHNetwork.split` gives the trained networks back.
"""

import copy

import torch
from torch import nn
from torch.nn import functional as F

from .network import MACHNetwork


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
