"""The per-repetition network, its grouped form, and running networks on data.

Each MACH repetition trains one of these to predict the ``B`` buckets of its
hash function.  The first layer is stored as an ``(n_features, width)``
table so that a sparse CSR batch is consumed directly as a weighted
``embedding_bag`` sum over its non-zeros: compute and gradient then scale
with the number of non-zeros, never with ``n_features``.
"""

import math
from numbers import Integral

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

from ._device import accelerator_path, cpu_path, cpu_vendor
from ._hashing import draw_tables, hash_range
from ._utils import silenced

#: torch's warnings at a process's first CSR tensor (at every one under
#: ``torch.set_warn_always(True)``).  The second, that invariant checks are
#: "implicitly" off, torch 2.11 and 2.12 give despite
#: ``check_invariants=False`` (pytorch issue 178274, fixed by PR 183256).
_CSR_WARNINGS = (
    "Sparse CSR tensor support is in beta",
    "Sparse invariant checks are implicitly disabled",
)
#: Device types on which this process built a CSR tensor, its warnings
#: silenced: later ones are not warned of (once a process; per device
#: type, in case a release warns per device).
_CSR_DEVICES = set()


def _check_count(value, name, minimum):
    """``value`` as an int of at least ``minimum`` (MACHNetwork's sizes)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Integral):
        raise TypeError(f"MACHNetwork: {name} must be an int, got {value!r}.")
    if value < minimum:
        raise ValueError(
            f"MACHNetwork: {name} must be at least {minimum}, got {value}."
        )
    return int(value)


def hidden_widths(sizes):
    """``sizes`` as a tuple of ints if it is a sequence of positive integers
    under 2**31 (not a string of digits), else ``None``: the rule
    MACHNetwork and MACHClassifier check ``hidden_layer_sizes`` by."""
    try:
        widths = None if isinstance(sizes, (str, bytes)) else tuple(sizes)
    except TypeError:
        return None
    if widths is None or not all(
        isinstance(w, Integral)
        and not isinstance(w, (bool, np.bool_))
        and 0 < w < 2**31
        for w in widths
    ):
        return None
    return tuple(int(w) for w in widths)


def _new_csr_tensor(crow, col, values, shape):
    return torch.sparse_csr_tensor(
        crow, col, values, size=shape, check_invariants=False
    )


def csr_tensor(crow, col, values, shape):
    """A ``torch.sparse_csr`` tensor from its index and value tensors."""
    device = crow.device.type
    if device not in _CSR_DEVICES or torch.is_warn_always_enabled():
        with silenced(*_CSR_WARNINGS):
            tensor = _new_csr_tensor(crow, col, values, shape)
        _CSR_DEVICES.add(device)
        return tensor
    return _new_csr_tensor(crow, col, values, shape)


# The once-a-process warnings are given at a device's first CSR tensor,
# silenced: the CPU's here, at import.  Silenced around each fit and
# prediction instead, they swapped the process's warning filters for the
# whole call, and calls from several threads left filters behind or dropped
# the caller's.  The caller's own CSR tensors no longer give them either.
csr_tensor(
    torch.zeros(1, dtype=torch.int64),
    torch.zeros(0, dtype=torch.int64),
    torch.zeros(0),
    (0, 0),
)


def csr_parts(X, dtype=None):
    """Row pointers, column indices (int64) and values of a scipy sparse ``X``.

    CPU tensors, columns sorted within rows; the values are copied, in
    float32 (float64 if ``dtype``, by default ``X``'s, is float64).
    """
    X = sp.csr_matrix(X)
    if not X.has_sorted_indices:
        X = X.sorted_indices()
    return (
        torch.from_numpy(np.asarray(X.indptr, dtype=np.int64)),
        torch.from_numpy(np.asarray(X.indices, dtype=np.int64)),
        torch.from_numpy(
            np.array(X.data, dtype=_float_dtype(X.dtype if dtype is None else dtype))
        ),
    )


def csr_to_torch(X, device="cpu"):
    """A scipy CSR matrix or array as a float32 (or float64) ``torch.sparse_csr``.

    Built on ``device`` from its parts: a CSR tensor moved to another device
    is constructed anew there, with torch's CSR warnings, which
    :func:`csr_tensor` silences.
    """
    parts = csr_parts(X)
    if torch.device(device).type != "cpu":
        parts = [t.to(device, non_blocking=True) for t in parts]
    return csr_tensor(*parts, X.shape)


def to_batch_tensor(X, sparse_input, device="cpu"):
    """Rows of ``X`` (dense or scipy sparse) as the tensor a module consumes,
    on ``device``.

    Always copies, so that read-only (memory-mapped) input never reaches
    torch.  Sparse rows stay sparse for modules that support it and are
    densified (these rows only) otherwise.
    """
    if sp.issparse(X):
        if sparse_input:
            return csr_to_torch(X, device)
        batch = torch.from_numpy(
            sp.csr_matrix(X).toarray().astype(_float_dtype(X.dtype))
        )
    else:
        batch = torch.from_numpy(np.array(X, dtype=_float_dtype(X.dtype), copy=True))
    return batch.to(device, non_blocking=True)


def feature_map(n_features, n_hashed_features, feature_seed):
    """The input-table row of each of ``n_features`` features, on the CPU:
    :class:`MACHNetwork`'s ``feature_rows`` for these arguments.

    int32 (4 bytes a feature: half of int64's, for a map that every
    repetition holds for every input feature), or int64 for a table of
    more than ``2**31`` rows.
    """
    rows = hash_range(n_features, draw_tables(feature_seed, 1), n_hashed_features)[0]
    return torch.from_numpy(rows).to(_map_dtype(n_hashed_features))


def _map_dtype(n_hashed_features):
    """The dtype of a feature map into ``n_hashed_features`` rows."""
    return torch.int32 if n_hashed_features <= 2**31 else torch.int64


def _float_dtype(dtype):
    """float64 stays float64; everything else computes in float32."""
    return np.float64 if dtype == np.float64 else np.float32


def _reset_linear(linear, generator):
    """``nn.Linear.reset_parameters``, drawing from ``generator``."""
    nn.init.kaiming_uniform_(linear.weight, a=math.sqrt(5), generator=generator)
    fan_in = linear.weight.shape[1]
    bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
    nn.init.uniform_(linear.bias, -bound, bound, generator=generator)


def _as_csr_if_sparse(X):
    """A sparse batch of another layout (COO, CSC) as CSR; others as given.

    The dense paths took COO by chance (``@`` accepts it, ``index_add_``
    does not, so a hashed network failed on small batches only)."""
    if X.layout in (torch.strided, torch.sparse_csr) or X.is_nested:
        return X
    return X.to_sparse_csr()


def _hashed_product(X, table, rows):
    """``X @ table[rows]``: a dense batch through a hashed input table.

    Pooled into the table's rows first when that holds less than the
    gathered table: ``(batch, n_rows)`` values against ``(n_features,
    width)``, which a file's one-row, 16,384-wide table over 16,384
    features made 1 GiB a batch.  The choice depends on the batch's number
    of rows alone, which prediction fixes (it pads the last batch), so a
    row's output does not depend on the rows predicted with it.
    """
    n_rows, width = table.shape
    if X.shape[0] * n_rows <= rows.shape[0] * width:
        return X.new_zeros(X.shape[0], n_rows).index_add_(1, rows, X) @ table
    return X @ table[rows]


def _onednn_linear_op():
    """oneDNN's ``linear`` on strided tensors (a private torch operator,
    which inductor's CPU code uses), or ``None`` where this torch lacks it."""
    if not torch.backends.mkldnn.is_available():
        return None
    try:
        return torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):
        return None


_LINEAR_OP = _onednn_linear_op()

#: Whether the default network's linear layers run their float32 CPU
#: products (forward and backward) through oneDNN instead of torch's BLAS.
#: On AMD CPUs, torch's MKL takes a slower code path than on Intel ones: on
#: an AMD EPYC with AVX-512 (the one AMD CPU measured), oneDNN ran the
#: output layer's three products at the CPU-epoch target's shapes in half
#: MKL's time (0.53 against 1.04 ms; benchmarks/results/onednn_cpu.md).
#: Intel CPUs keep MKL (oneDNN was not measured against it there).  The two
#: compute the same float32 products in another order: results differ by
#: rounding.  Tests set it either way to run both paths on any CPU.
_ONEDNN_LINEAR = (
    _LINEAR_OP is not None
    and torch.backends.mkl.is_available()
    and cpu_vendor() == "AuthenticAMD"
)


def _autocast_on():
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled()


class _OneDNNLinear(torch.autograd.Function):
    """``F.linear`` with the forward's and backward's products in oneDNN.

    A backward that builds a graph (``create_graph=True``, a second
    derivative) computes its products with torch's differentiable ones.
    """

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        return _LINEAR_OP(x, weight, bias, "none", [], "")

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        twice = torch.is_grad_enabled()
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:  # grad @ weight
            grad_x = (
                grad @ weight
                if twice
                else _LINEAR_OP(grad, weight.T, None, "none", [], "")
            )
        if ctx.needs_input_grad[1]:  # grad.T @ x
            grad_weight = (
                grad.T @ x if twice else _LINEAR_OP(grad.T, x.T, None, "none", [], "")
            )
        if ctx.needs_input_grad[2]:
            grad_bias = grad.sum(0)
        return grad_x, grad_weight, grad_bias


def _linear(x, weight, bias):
    """``F.linear(x, weight, bias)``, through oneDNN where it pays
    (``_ONEDNN_LINEAR``: float32 rows on the CPU) and torch would not
    expect its own kernels (autocast, oneDNN switched off, a ``torch.func``
    transform)."""
    if (
        _ONEDNN_LINEAR
        and x.device.type == "cpu"
        and x.dim() == 2
        and x.dtype == weight.dtype == torch.float32
        and bias is not None
        and bias.dtype == torch.float32
        and x.numel() > 0
        and weight.numel() > 0
        and torch._C._get_mkldnn_enabled()
        and not _autocast_on()
        and not torch._C._are_functorch_transforms_active()
    ):
        # oneDNN reads the bias as contiguous whatever its strides
        return _OneDNNLinear.apply(x, weight, bias.contiguous())
    return F.linear(x, weight, bias)


class _Linear(nn.Linear):
    """``nn.Linear`` whose products go through :func:`_linear`: the default
    network's layers (hooks, pruning and the state dict work as for
    ``nn.Linear``)."""

    def forward(self, x):
        return _linear(x, self.weight, self.bias)


def _sum_by_row(grad, rows, offsets, weights):
    """The gradient of weighted bag sums over table ``rows``, by table row.

    ``grad`` holds one row per bag (``offsets``, CSR row pointers); each
    non-zero ``j`` adds ``weights[j] * grad[bag of j]`` to table row
    ``rows[j]``.  Returns the distinct rows, sorted, and their summed
    gradients: one ``embedding_bag`` over the non-zeros in row order.
    """
    sorted_rows, order = torch.sort(rows)
    distinct, counts = torch.unique_consecutive(sorted_rows, return_counts=True)
    bounds = counts.new_zeros(counts.shape[0] + 1)
    torch.cumsum(counts, 0, out=bounds[1:])
    # the batch row (bag) of each non-zero, in the table-row order
    bags = torch.repeat_interleave(
        torch.arange(grad.shape[0], device=grad.device),
        torch.diff(offsets),
        output_size=rows.shape[0],
    )[order]
    values = F.embedding_bag(
        bags,
        grad,
        bounds,
        mode="sum",
        per_sample_weights=weights[order],
        include_last_offset=True,
    )
    return distinct, values


class _TableBag(torch.autograd.Function):
    """The input table's weighted bag sums, with a coalesced sparse gradient.

    ``F.embedding_bag(sparse=True)`` returns the table's gradient with one
    row of ``width`` values per non-zero of the batch, which the optimizer
    then coalesces (sorts and sums by table row).  Here the backward sums
    the non-zeros of each distinct table row directly (one bag per row,
    in sorted order) and returns the coalesced gradient: per step, on
    pypi-maskedword at the CPU-epoch target's settings, about 900 rows of
    256 values instead of 1,400, which the optimizer no longer coalesces:
    the library's step is 6% faster
    (``benchmarks/results/table_bag_cpu.md``).  The distinct rows are
    counted on the host, a synchronisation that a GPU would pay per step:
    the CPU only (``MACHNetwork._ROW_SUM_DEVICES``).
    """

    @staticmethod
    def forward(ctx, table, rows, offsets, weights):
        ctx.save_for_backward(rows, offsets, weights)  # _sum_by_row's order
        ctx.table_shape = table.shape
        return F.embedding_bag(
            rows,
            table,
            offsets,
            mode="sum",
            per_sample_weights=weights,
            include_last_offset=True,
        )

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        distinct, values = _sum_by_row(grad, *ctx.saved_tensors)
        return (
            torch.sparse_coo_tensor(
                distinct[None],
                values,
                ctx.table_shape,
                is_coalesced=True,
                check_invariants=False,  # sorted, distinct, in range
            ),
            None,
            None,
            None,
        )


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
        that accept sparse gradients such as :class:`~sklearn_mach.LazyAdam`.
    n_hashed_features : int or None, default=None
        Hash the ``n_features`` input features into this many rows of the
        input table (features sharing a row share its weights), with a
        tabulation hash drawn from ``feature_seed``.  ``None`` keeps one row
        per feature.
    feature_seed : int, default=0
        Seed of the feature hash, in ``[0, 2**32)``; MACH uses a different
        one per repetition, so features colliding in one network are apart
        in the others.
    generator : torch.Generator, default=None
        Draws the initial weights (on the generator's device, which must be
        where the module is built).  ``None`` draws from torch's global
        generator, as ``torch.nn`` layers do.  Not stored.

    Attributes
    ----------
    input_weight : torch.nn.Parameter of shape (n_rows, width)
        The input table: one row per feature, or ``n_hashed_features`` rows;
        ``width`` is the first hidden layer's (``n_outputs`` without one).
    input_bias : torch.nn.Parameter of shape (width,)
        The bias added to the input table's output.
    feature_rows : torch.Tensor of shape (n_features,) or None
        The input-table row of each feature (a buffer, saved with the
        weights; int32, 4 bytes a feature) when the features are hashed,
        else ``None``.
    layers : torch.nn.Sequential
        The ReLU and linear layers after the input table.
    init_kwargs : dict
        The constructor's arguments but ``generator``, to rebuild the module.
    sparse_gradient : bool
        Whether the input table's gradient is sparse for sparse batches (the
        constructor's argument; :class:`~sklearn_mach.MACHClassifier` turns
        it on where its optimizer takes sparse gradients and the input is
        wide enough for them to pay).

    Notes
    -----
    ``forward`` accepts a dense ``(batch, n_features)`` tensor or a
    ``torch.sparse_csr`` tensor of that shape.  Any module that sets the
    class attribute ``supports_sparse_input = True`` is handed CSR batches
    by :class:`~sklearn_mach.MACHClassifier`; other modules get dense ones.

    The parameters are built in float32 whatever torch's default dtype, so
    a seed gives the same weights under ``torch.set_default_dtype``;
    :class:`~sklearn_mach.MACHClassifier` casts them to float64 for float64
    input.

    On AMD CPUs the linear layers compute their float32 products (forward
    and backward) with oneDNN instead of torch's BLAS, MKL, which ran them
    at about half the speed on the AMD EPYC measured; the results differ
    by rounding only.
    """

    supports_sparse_input = True

    #: Devices on which a sparse input-table gradient comes back coalesced
    #: (:class:`_TableBag`); elsewhere ``F.embedding_bag(sparse=True)``'s,
    #: which needs no host synchronisation.  Empty under
    #: SKLEARN_MACH_TEST_GROUPED=1 (``_device.ACCELERATOR_PATHS_ON_CPU``).
    _ROW_SUM_DEVICES = cpu_path({"cpu"})

    def __init__(
        self,
        n_features,
        n_outputs,
        hidden_layer_sizes=(256,),
        sparse_gradient=False,
        n_hashed_features=None,
        feature_seed=0,
        *,
        generator=None,
    ):
        super().__init__()
        n_features = _check_count(n_features, "n_features", 0)
        n_outputs = _check_count(n_outputs, "n_outputs", 1)
        if n_hashed_features is not None:
            n_hashed_features = _check_count(n_hashed_features, "n_hashed_features", 1)
        hidden = hidden_widths(hidden_layer_sizes)
        if hidden is None:
            raise ValueError(
                "MACHNetwork: hidden_layer_sizes must be a sequence of positive "
                f"integers (under 2**31), got {hidden_layer_sizes!r}."
            )
        feature_seed = _check_count(feature_seed, "feature_seed", 0)
        if feature_seed >= 2**32:
            raise ValueError(
                f"MACHNetwork: feature_seed must be below 2**32, got {feature_seed}."
            )
        if not isinstance(sparse_gradient, (bool, np.bool_)):
            raise TypeError(
                f"MACHNetwork: sparse_gradient must be a bool, got {sparse_gradient!r}."
            )
        widths = [*hidden, n_outputs]
        self.init_kwargs = dict(
            n_features=n_features,
            n_outputs=n_outputs,
            hidden_layer_sizes=hidden,
            sparse_gradient=bool(sparse_gradient),
            n_hashed_features=n_hashed_features,
            feature_seed=feature_seed,
        )
        self.sparse_gradient = bool(sparse_gradient)
        n_rows = n_features
        if n_hashed_features is not None:
            # Saved with the weights: a stored model keeps its feature map.
            # On the current default device, as the weights (from_numpy
            # ignores a `with torch.device(...)` block); on the meta device
            # (shapes only) not hashed
            device = torch.empty(0).device
            self.register_buffer(
                "feature_rows",
                torch.empty(n_features, dtype=_map_dtype(n_hashed_features))
                if device.type == "meta"
                else feature_map(n_features, n_hashed_features, feature_seed).to(
                    device
                ),
            )
            n_rows = n_hashed_features
        else:
            self.feature_rows = None
        # float32 whatever torch's default dtype: the same generator draws
        # other numbers in float64 (MACHClassifier casts after drawing)
        float32 = torch.float32
        self.input_weight = nn.Parameter(torch.empty(n_rows, widths[0], dtype=float32))
        self.input_bias = nn.Parameter(torch.empty(widths[0], dtype=float32))
        layers = []
        for fan_in, fan_out in zip(widths[:-1], widths[1:]):
            # built without drawing (nn.Linear's constructor would draw from
            # the global generator), then given the constructor's draws from
            # ``generator``: a seed gives the weights torch.manual_seed(seed)
            # and plain nn.Linear layers give
            linear = _Linear(fan_in, fan_out, device="meta", dtype=float32)
            linear = linear.to_empty(device=self.input_weight.device)
            _reset_linear(linear, generator)
            layers += [nn.ReLU(), linear]
        self.layers = nn.Sequential(*layers)
        if generator is None:  # subclasses may override reset_parameters()
            self.reset_parameters()
        else:
            self.reset_parameters(generator)

    def reset_parameters(self, generator=None):
        """Initialise the weights as ``nn.Linear`` does (uniform, 1/sqrt(fan_in)).

        The input table and bias draw from ``U(-1/sqrt(n_features),
        1/sqrt(n_features))``; each ``nn.Linear`` layer gets exactly what its
        own ``reset_parameters`` draws, in the same order, from
        ``generator`` (torch's global generator when ``None``): the same
        seed gives the same weights either way.

        Parameters
        ----------
        generator : torch.Generator, default=None
            Source of the random draws.
        """
        bound = 1.0 / math.sqrt(max(1, self.init_kwargs["n_features"]))
        nn.init.uniform_(self.input_weight, -bound, bound, generator=generator)
        nn.init.uniform_(self.input_bias, -bound, bound, generator=generator)
        for layer in self.layers:
            if isinstance(layer, nn.Linear):
                _reset_linear(layer, generator)

    def forward(self, X):
        """Bucket logits of a batch.

        Parameters
        ----------
        X : torch.Tensor of shape (batch, n_features)
            Dense, or sparse: ``torch.sparse_csr`` is read through
            ``embedding_bag``, at a cost proportional to its non-zeros, and
            another sparse layout (COO, CSC) as its CSR conversion.

        Returns
        -------
        logits : torch.Tensor of shape (batch, n_outputs)
        """
        if X.shape[-1] != self.init_kwargs["n_features"]:
            # a CSR batch of another width would read rows of the table
            # that belong to other features, or fail deep in torch
            raise ValueError(
                f"X has {X.shape[-1]} features, but this MACHNetwork was built "
                f"for {self.init_kwargs['n_features']}."
            )
        X = _as_csr_if_sparse(X)
        if X.layout == torch.sparse_csr:
            columns = X.col_indices()
            if self.feature_rows is not None:
                # int64: the table gradient's row indices
                columns = self.feature_rows.index_select(0, columns).long()
            if (
                self.sparse_gradient
                and self.input_weight.device.type in self._ROW_SUM_DEVICES
                and not X.values().requires_grad
            ):
                hidden = _TableBag.apply(
                    self.input_weight, columns, X.crow_indices(), X.values()
                )
            else:
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
            hidden = _hashed_product(X, self.input_weight, self.feature_rows)
        else:
            hidden = X @ self.input_weight
        return self.layers(hidden + self.input_bias)


class GroupedMACHNetwork(nn.Module):
    """``G`` MACHNetworks of identical shapes evaluated as one module.

    Training ``R`` small networks one after another leaves an accelerator
    mostly idle.  This module stacks the weights of ``G`` independent
    :class:`MACHNetwork` modules and evaluates all of them with one
    ``embedding_bag`` and one batched matmul (``baddbmm``) per layer.  The
    weights stay independent: the output of network ``g`` depends only on
    its own weights, so training the group on a batch is the same as
    training each network on it.  :meth:`split` gives the networks back.

    The ``G`` input tables are stacked as ONE 2-D ``(G * n_rows, width)``
    parameter, network ``g`` owning rows ``[g * n_rows, (g + 1) * n_rows)``:
    a sparse ``embedding_bag`` gradient then lands on the parameter itself
    (it cannot flow back through a reshape).

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
        kwargs = [dict(n.init_kwargs, feature_seed=0) for n in networks]
        if (
            not networks
            or not all(isinstance(n, MACHNetwork) for n in networks)
            or any(k != kwargs[0] for k in kwargs)
        ):
            raise ValueError(
                "GroupedMACHNetwork needs MACHNetworks of identical shapes."
            )
        self.templates = [dict(n.init_kwargs) for n in networks]
        self.sparse_gradient = networks[0].sparse_gradient
        n_groups = len(networks)
        self.n_rows, width = networks[0].input_weight.shape
        self.input_weight = nn.Parameter(
            torch.cat([n.input_weight.detach() for n in networks]).clone()
        )
        self.input_bias = nn.Parameter(
            torch.stack([n.input_bias.detach() for n in networks])
        )
        linears = [[m for m in n.layers if isinstance(m, nn.Linear)] for n in networks]
        self.weights = nn.ParameterList(
            nn.Parameter(
                torch.stack([ls[i].weight.detach().T for ls in linears]).contiguous()
            )
            for i in range(len(linears[0]))
        )
        self.biases = nn.ParameterList(
            nn.Parameter(torch.stack([ls[i].bias.detach() for ls in linears]))
            for i in range(len(linears[0]))
        )
        device = networks[0].input_weight.device
        first_row = torch.arange(n_groups, device=device)[:, None] * self.n_rows
        if networks[0].feature_rows is not None:  # rows of the stacked table
            rows = torch.stack([n.feature_rows for n in networks]) + first_row
        else:
            rows = first_row
        self.register_buffer("feature_rows", rows, persistent=False)

    def forward(self, X, stacked=False):
        """Bucket logits of every network of the group.

        Parameters
        ----------
        X : torch.Tensor of shape (batch, n_features) or (G * batch, n_features)
            Dense, or sparse (read as CSR, as :meth:`MACHNetwork.forward`).
        stacked : bool, default=False
            ``False``: every network reads all the rows of ``X``
            (prediction).  ``True``: ``X`` stacks one block of ``batch``
            rows per network, network ``g`` reading block ``g`` only
            (training, where each network draws its own batches).

        Returns
        -------
        logits : torch.Tensor of shape (G, batch, n_outputs)
        """
        n_groups, width = self.input_bias.shape
        if stacked and X.shape[0] % n_groups:
            raise ValueError(
                f"A stacked batch of {X.shape[0]} rows cannot be split among "
                f"{n_groups} networks."
            )
        X = _as_csr_if_sparse(X)
        if X.layout == torch.sparse_csr:
            columns, crow = X.col_indices(), X.crow_indices()
            nnz = columns.shape[0]
            if stacked:
                # network of each entry: its block of batch rows
                per_block = torch.diff(crow[:: X.shape[0] // n_groups])
                network = torch.repeat_interleave(
                    torch.arange(n_groups, device=crow.device),
                    per_block,
                    output_size=nnz,
                )
                if self.feature_rows.shape[1] == 1:  # no feature hashing
                    rows = columns + self.feature_rows[network, 0]
                else:
                    rows = self.feature_rows[network, columns]
                offsets, weights = crow, X.values()
            else:
                if self.feature_rows.shape[1] == 1:
                    rows = columns[None, :] + self.feature_rows
                else:
                    rows = self.feature_rows[:, columns]
                rows = rows.reshape(-1)
                # Bag i of network g holds its nnz entries shifted by g * nnz.
                shift = torch.arange(n_groups, device=crow.device)[:, None] * nnz
                offsets = torch.cat(
                    [(crow[None, :-1] + shift).reshape(-1), crow[-1:] + shift[-1]]
                )
                weights = X.values().repeat(n_groups)
            hidden = F.embedding_bag(
                rows,
                self.input_weight,
                offsets,
                mode="sum",
                per_sample_weights=weights,
                include_last_offset=True,
                sparse=self.sparse_gradient,
            ).view(n_groups, -1, width)
        else:
            tables = self.input_weight.view(n_groups, self.n_rows, width)
            if stacked:
                X = X.view(n_groups, -1, X.shape[1])
            if self.feature_rows.shape[1] == 1:
                hidden = torch.matmul(X, tables)
            else:
                # network g's rows counted from the start of its own table,
                # as split() gives them back
                hidden = torch.stack(
                    [
                        _hashed_product(
                            X[g] if stacked else X,
                            tables[g],
                            self.feature_rows[g] - g * self.n_rows,
                        )
                        for g in range(n_groups)
                    ]
                )
        hidden = hidden + self.input_bias[:, None, :]
        for weight, bias in zip(self.weights, self.biases):
            hidden = torch.baddbmm(bias[:, None, :], torch.relu(hidden), weight)
        return hidden

    def split(self):
        """The ``G`` networks as separate MACHNetworks on the CPU, in eval mode."""
        networks, copy = [], _HostCopier()
        for g, kwargs in enumerate(self.templates):
            with torch.device("meta"):  # no memory, no draw from any generator
                net = MACHNetwork(**kwargs, generator=torch.Generator())
            net = net.to(self.input_weight.dtype).to_empty(device="cpu")
            linears = [m for m in net.layers if isinstance(m, nn.Linear)]
            with torch.no_grad():
                rows = slice(g * self.n_rows, (g + 1) * self.n_rows)
                copy(self.input_weight[rows], net.input_weight)
                copy(self.input_bias[g], net.input_bias)
                for linear, weight, bias in zip(linears, self.weights, self.biases):
                    copy(weight[g].T, linear.weight)
                    copy(bias[g], linear.bias)
                if net.feature_rows is not None:
                    copy(self.feature_rows[g] - g * self.n_rows, net.feature_rows)
            networks.append(net.eval())
        return networks


class _HostCopier:
    """Copies device tensors into CPU tensors through one pinned buffer.

    A copy from a GPU into ordinary (pageable) memory goes through a bounce
    buffer of the driver at a fraction of the bus speed; through a pinned
    buffer it runs at bus speed, and the host-side copy is a plain memcpy.
    """

    CHUNK = 1 << 24  # elements per transfer
    #: Devices whose tensors are staged through the buffer; the CPU too
    #: under SKLEARN_MACH_TEST_GROUPED=1 (the buffer is then pinned only if
    #: CUDA is there: pinning needs it).
    _STAGED_DEVICES = accelerator_path({"cuda"})

    def __init__(self):
        self.buffers = {}

    def __call__(self, src, dst):
        if src.device.type not in self._STAGED_DEVICES or src.numel() == 0:
            dst.copy_(src)
            return
        src = src.contiguous().view(-1)
        flat = dst.view(-1)
        size = min(self.CHUNK, src.numel())
        buffer = self.buffers.get(src.dtype)
        if buffer is None or len(buffer) < size:
            buffer = self.buffers[src.dtype] = torch.empty(
                size, dtype=src.dtype, pin_memory=torch.cuda.is_available()
            )
        for start in range(0, src.numel(), len(buffer)):
            part = src[start : start + len(buffer)]
            staged = buffer[: len(part)]
            staged.copy_(part)  # synchronous: the buffer is reused next
            flat[start : start + len(part)].copy_(staged)


# Shifted logits (logit minus the row's largest) below this give a softmax
# probability of exactly 0.  e**-60 is 9e-27: a probability that is kept is
# at least 1.7e-26 / B, and times a row's share of the batch's loss weight
# (1 / batch with equal weights) it stays above float32's subnormal range
# (below 1.2e-38) while B * batch is below 10**12; what is dropped is far
# below the rounding of any probability near 1.
_LOG_TINY = -60.0
_TINY_PROBABILITY = 2 * math.exp(_LOG_TINY)  # above float32 exp(_LOG_TINY)


class _CrossEntropy(torch.autograd.Function):
    """Cross-entropy over the last dimension with no subnormal intermediate.

    ``F.cross_entropy`` computes ``exp`` of every log-probability in its
    backward pass.  Once a network is confident, many of them lie below
    -87, where float32 ``exp`` returns subnormals, and CPUs process
    subnormals 25-50x slower than normal numbers: the softmax, its backward
    and the output layer's gradient products that read them all slow down
    (with ``MACHClassifier()``'s defaults on 100,000 pypi-maskedword rows a
    step took 1.36 times as long; ``benchmarks/results/loss_cpu.md``).
    Here probabilities below ``2 * exp(_LOG_TINY)`` of the largest are
    exactly 0 instead.  The loss is exact: the target's log-probability is
    read before the cut.  The gradient, ``softmax - one_hot``, differs from
    the exact one by less than 2e-26 per entry.
    """

    @staticmethod
    def forward(ctx, logits, targets):
        shifted = logits - logits.amax(dim=-1, keepdim=True)
        target_shifted = shifted.gather(-1, targets[..., None])[..., 0]
        # exp of the clamped values stays normal (exp(-inf) or an underflow
        # would take the slow path too); the clamped ones then become 0
        probabilities = shifted.clamp_min_(_LOG_TINY).exp_()
        F.threshold_(probabilities, _TINY_PROBABILITY, 0.0)
        total = probabilities.sum(dim=-1, keepdim=True)
        probabilities.div_(total)
        ctx.save_for_backward(probabilities, targets)
        return total[..., 0].log_().sub_(target_shifted)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        probabilities, targets = ctx.saved_tensors
        # in place: a second backward (retain_graph) raises on the version
        grad_logits = probabilities.mul_(grad[..., None])
        grad_logits.scatter_add_(-1, targets[..., None], -grad[..., None])
        return grad_logits, None


#: The dtypes of logits that training takes (the loss's kernels compute in
#: them); decoding reads all but bfloat16 (``_SCORE_DTYPES``).
_TRAIN_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _layout_name(tensor):
    """``"nested"``, or a sparse tensor's layout (``"sparse_coo"``, ...)."""
    return "nested" if tensor.is_nested else str(tensor.layout).replace("torch.", "")


def check_output(out, n_rows, n_outputs, device, dtypes, groups=None, mode=""):
    """``TypeError``/``ValueError`` unless ``out``, a network's output on a
    batch of ``n_rows`` rows on ``device``, is one dense tensor of
    ``n_outputs`` bucket scores per row in one of ``dtypes``: a custom
    module's, which the loss or decoding would misread or fail on.

    ``groups``: the number of networks a grouped output stacks in front
    (``"G"``: any number), or ``None`` for one network; ``n_outputs=None``
    skips the shape.  ``mode`` goes into the messages (``" in eval mode"``).
    """
    what = f"The network's output{mode}"
    if not isinstance(out, torch.Tensor):
        raise TypeError(
            f"{what} is a {type(out).__name__}; expected one tensor of bucket scores."
        )
    if out.is_nested or out.layout is not torch.strided:
        raise TypeError(
            f"{what} is a {_layout_name(out)} tensor; expected one dense tensor "
            "of bucket scores."
        )
    if out.dtype not in dtypes:
        names = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        raise TypeError(
            f"{what} has dtype {out.dtype}; expected bucket scores of {names}."
        )
    if out.device.type != device.type:
        raise ValueError(
            f"{what} is on {out.device.type}; expected it on its input's "
            f"device, {device.type}."
        )
    if n_outputs is None:
        return
    expected = (n_rows, n_outputs) if groups is None else (groups, n_rows, n_outputs)
    if out.dim() != len(expected) or any(
        e != "G" and e != size for e, size in zip(expected, out.shape)
    ):
        raise ValueError(
            f"{what} has shape {tuple(out.shape)}; expected {expected} (a score "
            f"for each of the {n_outputs} buckets, for each row of a batch of "
            f"{n_rows})."
        )


class BucketLoss(nn.Module):
    """Each network's own weighted mean loss over a batch, as a vector.

    Summing the vector (as training does) gives every network exactly the
    gradient it would get if trained alone on its batch.

    Parameters
    ----------
    multilabel : bool
        BCE-with-logits over multi-hot bucket targets (mean over the
        buckets); else cross-entropy over bucket ids.

    n_outputs : int, default=None
        The number of buckets: logits of another shape than
        ``(m, n_outputs)``, or ``(n_networks, m, n_outputs)``, raise
        ``ValueError`` (a custom module's output; else a torch error, or a
        silently wrong model).  ``None`` skips the check.

    n_networks : int, default=None
        The number of networks a grouped module's logits stack; ``None``:
        one network, whose logits are ``(m, n_outputs)``.

    Notes
    -----
    ``forward(logits, targets, weights)`` takes the logits of ``G``
    networks on their batches of ``m`` rows, of shape ``(G, m, n_outputs)``
    (or ``(m, n_outputs)`` for one network); targets of shape ``(G, m)``
    (bucket ids) or ``(G, m, n_outputs)`` (multi-hot); and sample weights
    of shape ``(G, m)`` (or ``(m,)``, shared).  It returns the ``G`` losses
    ``sum_i w_gi loss_gi / sum_i w_gi``.  Logits that are not one tensor
    of float16, bfloat16, float32 or float64 scores raise ``TypeError``;
    logits on another device than the weights, ``ValueError``.
    """

    #: Devices whose cross-entropy cuts tiny probabilities to 0
    #: (:class:`_CrossEntropy`): the CPU, where subnormals take a slow path.
    #: Elsewhere torch's fused kernels run: fewer launches per step.  Empty
    #: under SKLEARN_MACH_TEST_GROUPED=1.
    _CUT_DEVICES = cpu_path({"cpu"})

    def __init__(self, multilabel=False, n_outputs=None, n_networks=None):
        super().__init__()
        self.multilabel = multilabel
        self.n_outputs = n_outputs
        self.n_networks = n_networks

    def forward(self, logits, targets, weights):
        check_output(
            logits,
            weights.shape[-1],
            self.n_outputs,
            weights.device,
            _TRAIN_DTYPES,
            groups=self.n_networks,
        )
        if logits.dim() == 2:
            logits = logits[None]
        n_groups, batch, n_outputs = logits.shape
        if weights.dim() == 1:
            weights = weights[None]
        if self.multilabel:
            losses = F.binary_cross_entropy_with_logits(
                logits, targets.reshape(n_groups, batch, n_outputs), reduction="none"
            ).mean(dim=2)
        elif logits.device.type in self._CUT_DEVICES:
            losses = _CrossEntropy.apply(logits, targets.reshape(n_groups, batch))
        else:
            losses = F.cross_entropy(
                logits.reshape(-1, n_outputs), targets.reshape(-1), reduction="none"
            ).view(n_groups, batch)
        # a batch whose weights all round to 0 (a largest weight of 1 next
        # to ones under 1e-45) adds nothing instead of 0 / 0
        total = weights.sum(dim=1)
        return (losses * weights).sum(dim=1) / torch.where(total > 0, total, 1)


_TRANSFORMS = {
    "softmax": lambda z: torch.softmax(z, dim=-1),
    "sigmoid": torch.sigmoid,
    "log_softmax": lambda z: torch.log_softmax(z, dim=-1),
    "logits": lambda z: z,
}


#: The dtypes of scores that decoding reads.
_SCORE_DTYPES = (torch.float16, torch.float32, torch.float64)


def run_networks(
    modules, X, device, transform, batch_size, grouped=False, n_outputs=None
):
    """Bucket outputs of ``modules`` on rows ``X``, as a list of tensors on ``device``.

    The modules run on full batches of ``batch_size`` rows (the last one
    padded with empty rows), so every row goes through the same kernels and
    its output does not depend on the rows predicted with it.

    Parameters
    ----------
    modules : list of torch.nn.Module
        Modules already on ``device``; with ``grouped``, each gives the
        outputs of several networks as ``(G, batch, B)``.
    transform : {"softmax", "sigmoid", "log_softmax", "logits"}
    n_outputs : int, default=None
        The number of buckets: a module's output of another shape, or on
        another device than its batch, raises ``ValueError``; one that is
        not a tensor of float16, float32 or float64 scores, ``TypeError``.
        ``None`` skips the check.

    Returns
    -------
    outputs : list of tensors of shape (n_samples, n_outputs)
    """
    function = _TRANSFORMS[transform]
    sparse = sp.issparse(X)
    chunks = [[] for _ in modules]
    with torch.no_grad():
        for module in modules:
            module.eval()
        for start in range(0, X.shape[0], batch_size):
            rows = X[start : start + batch_size]
            n_rows = rows.shape[0]
            if n_rows < batch_size:
                padding = (batch_size - n_rows, rows.shape[1])
                rows = (
                    sp.vstack([rows, sp.csr_matrix(padding, dtype=rows.dtype)])
                    if sparse
                    else np.vstack([rows, np.zeros(padding, dtype=rows.dtype)])
                )
            for chunk, module in zip(chunks, modules):
                sparse_input = sparse and getattr(
                    module, "supports_sparse_input", False
                )
                batch = to_batch_tensor(rows, sparse_input, device)
                out = module(batch)
                if n_outputs is not None:
                    check_output(
                        out,
                        batch_size,
                        n_outputs,
                        batch.device,
                        _SCORE_DTYPES,
                        groups="G" if grouped else None,
                        mode=" in eval mode",
                    )
                chunk.append(function(out)[..., :n_rows, :])
    outputs = []
    for chunk in chunks:
        out = torch.cat(chunk, dim=-2)
        outputs.extend(out.unbind(0) if grouped else [out])
    return outputs
