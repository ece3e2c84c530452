"""Training and inference of one repetition's network with skorch.

Everything a joblib worker needs lives here as module-level, importable
functions and classes, so that repetitions cross process borders (loky,
dask) as well as threads.  Randomness is local: the module is initialised
under a lock from a per-repetition seed and batches are shuffled by a
per-repetition :class:`numpy.random.Generator`, so results do not depend on
the joblib backend or on ``n_jobs``.
"""

import contextlib
import copy
import sys
import threading
import warnings

import numpy as np
import scipy.sparse as sp
import torch
from skorch import NeuralNet
from skorch.callbacks import Callback
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ._network import MACHNetwork
from ._optim import LazyAdam

_INIT_LOCK = threading.Lock()

# torch flags its whole sparse CSR layout as beta once per process; the parts
# used here (construction, embedding_bag over its index arrays) are stable.
warnings.filterwarnings(
    "ignore", message="Sparse CSR tensor support is in beta", category=UserWarning
)

#: Optimizers accepted by name, and whether they take sparse gradients.
OPTIMIZERS = {
    "adam": (LazyAdam, True),
    "sgd": (torch.optim.SGD, True),
}


def csr_to_torch(X):
    """A scipy CSR matrix (or array) as a ``torch.sparse_csr`` float32 tensor."""
    return torch.sparse_csr_tensor(
        torch.from_numpy(np.asarray(X.indptr, dtype=np.int64)),
        torch.from_numpy(np.asarray(X.indices, dtype=np.int64)),
        torch.from_numpy(np.asarray(X.data, dtype=np.float32)),
        size=X.shape,
        check_invariants=False,  # scipy's CSR is valid by construction
    )


def to_batch_tensor(X, sparse_input):
    """One batch of rows as the tensor a module consumes.

    Always copies, so that read-only (memory-mapped) input never reaches
    torch.  Sparse rows stay sparse for modules that support it and are
    densified (this batch only) otherwise.
    """
    if sp.issparse(X):
        X = sp.csr_matrix(X)
        if not X.has_sorted_indices:
            X = X.sorted_indices()
        if sparse_input:
            return csr_to_torch(X)
        return torch.from_numpy(X.toarray().astype(np.float32, copy=False))
    return torch.from_numpy(np.array(X, dtype=np.float32, copy=True))


class BatchDataset(Dataset):
    """Rows of ``X`` (dense or CSR) and their training targets.

    Batches are cut by :class:`BatchIterator` with fancy indexing on the
    whole arrays: skorch's own Dataset would densify CSR row by row.
    """

    def __init__(self, X, targets, sparse_input):
        self.X = X
        self.targets = targets
        self.sparse_input = sparse_input

    def __len__(self):
        return self.X.shape[0]

    def batch(self, rows):
        X = to_batch_tensor(self.X[rows], self.sparse_input)
        y = self.targets[rows]
        if sp.issparse(y):
            y = torch.from_numpy(y.toarray().astype(np.float32, copy=False))
        else:
            y = torch.from_numpy(np.asarray(y))
        return X, y

    def __getitem__(self, i):  # pragma: no cover - batches are sliced whole
        return self.batch(np.array([i]))


class BatchIterator:
    """Mini-batches of a :class:`BatchDataset`, shuffled by a local generator.

    Used as skorch's ``iterator_train``.  The generator lives as long as the
    iterator, so every epoch draws a new, reproducible permutation.
    """

    def __init__(self, dataset, batch_size, shuffle=False, seed=None):
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.rng = np.random.default_rng(seed)

    def __len__(self):
        n = len(self.dataset)
        return (n + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        n = len(self.dataset)
        order = self.rng.permutation(n) if self.shuffle else np.arange(n)
        for start in range(0, n, self.batch_size):
            rows = order[start : start + self.batch_size]
            if self.shuffle:
                rows = np.sort(rows)  # contiguous access; the batch is a set
            yield self.dataset.batch(rows)


def sparse_gradient_pays(X, batch_size):
    """Whether a sparse input-table gradient beats a dense one for ``X``.

    A sparse gradient costs about a sort of the batch's non-zeros; a dense
    one costs the whole ``n_features``-row table.  Sparse wins only when a
    batch touches a small part of the table.
    """
    if not sp.issparse(X) or X.shape[0] == 0:
        return False
    nnz_per_batch = batch_size * X.nnz / X.shape[0]
    return X.shape[1] > 8 * nnz_per_batch


class EpochProgressBar(Callback):
    """A tqdm bar over one network's epochs, showing its training loss."""

    def __init__(self, description, total):
        self.description = description
        self.total = total

    def on_train_begin(self, net, **kwargs):
        self.bar_ = tqdm(
            total=self.total, desc=self.description, unit="epoch", file=sys.stderr
        )

    def on_epoch_end(self, net, **kwargs):
        self.bar_.set_postfix(loss=f"{net.history[-1, 'train_loss']:.4f}")
        self.bar_.update()

    def on_train_end(self, net, **kwargs):
        self.bar_.close()


@contextlib.contextmanager
def torch_threads(n_threads):
    """Run torch's intra-op work on ``n_threads`` threads, then restore."""
    previous = torch.get_num_threads()
    if n_threads is not None and n_threads != previous:
        torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


def build_module(
    module,
    n_features,
    n_outputs,
    hidden_layer_sizes,
    sparse_gradient,
    seed,
    n_hashed_features=None,
):
    """Instantiate a repetition's module with weights drawn from ``seed``.

    torch initialisers draw from the process-global generator; holding a
    lock while seeding a forked copy of it makes the weights depend only on
    ``seed`` even when repetitions are built by concurrent threads.
    """
    with _INIT_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if module is None:
            return MACHNetwork(
                n_features,
                n_outputs,
                hidden_layer_sizes=hidden_layer_sizes,
                sparse_gradient=sparse_gradient,
                n_hashed_features=n_hashed_features,
                feature_seed=seed,
            )
        return module(n_features=n_features, n_outputs=n_outputs)


def fit_repetition(
    X,
    targets,
    *,
    multilabel,
    n_outputs,
    module,
    hidden_layer_sizes,
    optimizer,
    lr,
    max_epochs,
    batch_size,
    device,
    seed,
    n_threads,
    verbose,
    description="network",
    warm_start=None,
    n_hashed_features=None,
):
    """Train one repetition's network; return it on the CPU with its history.

    Parameters
    ----------
    X : ndarray or scipy.sparse CSR of shape (n_samples, n_features)
    targets : ndarray of int of shape (n_samples,) or CSR of shape (n_samples, n_outputs)
        Bucket index of each sample (multiclass) or its multi-hot bucket
        vector (multilabel).

    verbose : int
        0: silent; 1: a progress bar over the epochs (``description``,
        training loss); 2 and above: also skorch's per-epoch table.
    n_hashed_features : int or None
        Rows of the default network's hashed input table (see
        :class:`~sklearn_mach._network.MACHNetwork`).
    warm_start : tuple (module, optimizer_state) or None
        Continue training a copy of ``module`` (the original is left
        untouched) with the optimizer restored from ``optimizer_state``
        (``None``: fresh moments) instead of building a new network.

    Returns
    -------
    module : torch.nn.Module
        The trained network, in eval mode, on the CPU.
    history : skorch.history.History
        Per-epoch training loss and timing.
    optimizer_state : dict
        The optimizer's ``state_dict``, on the CPU, to continue training.
    """
    with torch_threads(n_threads):
        optimizer_cls, sparse_ok = optimizer_spec(optimizer)
        if warm_start is None:
            net_module = build_module(
                module,
                X.shape[1],
                n_outputs,
                hidden_layer_sizes,
                sparse_ok and sparse_gradient_pays(X, batch_size),
                seed,
                n_hashed_features=n_hashed_features,
            )
        else:
            net_module = copy.deepcopy(warm_start[0]).train()
            if not sparse_ok and getattr(net_module, "sparse_gradient", False):
                net_module.sparse_gradient = False
        sparse_input = sp.issparse(X) and getattr(
            net_module, "supports_sparse_input", False
        )
        criterion = torch.nn.BCEWithLogitsLoss if multilabel else torch.nn.CrossEntropyLoss
        net = make_net(
            net_module, criterion, optimizer_cls, lr, max_epochs, batch_size,
            device, seed, verbose, description,
        )
        net.initialize()
        if warm_start is not None and warm_start[1] is not None:
            net.optimizer_.load_state_dict(warm_start[1])
        net.partial_fit(BatchDataset(X, targets, sparse_input), y=None)
        trained = net.module_.to("cpu").eval()
        return trained, net.history, _to_cpu(net.optimizer_.state_dict())


def optimizer_spec(optimizer):
    """The optimizer class for ``optimizer`` and whether it takes sparse gradients."""
    if isinstance(optimizer, str):
        return OPTIMIZERS[optimizer]
    return optimizer, False


def make_net(module, criterion, optimizer_cls, lr, max_epochs, batch_size,
             device, seed, verbose, description, **kwargs):
    """The skorch net that trains ``module``: batches from :class:`BatchIterator`."""
    return NeuralNet(
        module=module,
        criterion=criterion,
        optimizer=optimizer_cls,
        lr=lr,
        max_epochs=max_epochs,
        batch_size=batch_size,
        train_split=None,
        iterator_train=BatchIterator,
        iterator_train__shuffle=True,
        iterator_train__seed=seed,
        device=device,
        callbacks=[EpochProgressBar(description, max_epochs)] if verbose else None,
        verbose=int(verbose >= 2),
        **kwargs,
    )


def fit_repetition_group(
    X,
    targets,
    *,
    multilabel,
    n_outputs,
    hidden_layer_sizes,
    optimizer,
    lr,
    max_epochs,
    batch_size,
    device,
    seeds,
    shuffle_seed,
    n_threads,
    verbose,
    description="networks",
    n_hashed_features=None,
):
    """Train several repetitions' default networks as one batched module.

    Each network is initialised from its own seed exactly as
    :func:`fit_repetition` would, then all of them train together in a
    :class:`~sklearn_mach._network.GroupedMACHNetwork` on the same
    batches (order drawn from ``shuffle_seed``): the same mathematics as
    training them one by one on those batches, with one kernel launch per
    layer for the whole group.  Meant for GPUs.

    Parameters
    ----------
    targets : list of G arrays or CSR matrices
        Each repetition's targets, as for :func:`fit_repetition`.
    seeds : list of G int
        Initialisation seed of each network.

    Returns
    -------
    results : list of G tuples ``(module, history, None)``
        As :func:`fit_repetition` returns them (the history is shared).
    """
    from ._network import GroupedLoss, GroupedMACHNetwork

    with torch_threads(n_threads):
        optimizer_cls, sparse_ok = optimizer_spec(optimizer)
        sparse_gradient = sparse_ok and sparse_gradient_pays(X, batch_size)
        grouped = GroupedMACHNetwork([
            build_module(None, X.shape[1], n_outputs, hidden_layer_sizes,
                         sparse_gradient, seed, n_hashed_features=n_hashed_features)
            for seed in seeds
        ])
        if multilabel:
            group_targets = sp.hstack(targets, format="csr")
        else:
            group_targets = np.column_stack(targets)
        net = make_net(
            grouped, GroupedLoss, optimizer_cls, lr, max_epochs, batch_size,
            device, shuffle_seed, verbose, description,
            criterion__multilabel=multilabel,
        )
        net.initialize()
        net.partial_fit(BatchDataset(X, group_targets, sp.issparse(X)), y=None)
        return [(module, net.history, None) for module in net.module_.split()]


def _to_cpu(state):
    """A (nested) optimizer state with every tensor moved to the CPU."""
    if torch.is_tensor(state):
        return state.cpu()
    if isinstance(state, dict):
        return {key: _to_cpu(value) for key, value in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(_to_cpu(value) for value in state)
    return state


def bucket_outputs(module, X, device, output, batch_size):
    """Per-bucket outputs of one trained network on rows ``X``.

    The network always runs on full batches of ``batch_size`` rows (the last
    one padded with empty rows), so every row goes through the same kernels
    and its output does not depend on the rows predicted with it.

    Parameters
    ----------
    output : {"softmax", "sigmoid", "log_softmax", "logits"}
        Transformation of the network's logits.

    Returns
    -------
    outputs : torch.Tensor of shape (n_samples, n_outputs), float32, on ``device``
    """
    sparse_input = sp.issparse(X) and getattr(module, "supports_sparse_input", False)
    transform = {
        "softmax": lambda z: torch.softmax(z, dim=1),
        "sigmoid": torch.sigmoid,
        "log_softmax": lambda z: torch.log_softmax(z, dim=1),
        "logits": lambda z: z,
    }[output]
    chunks = []
    with torch.no_grad():
        if torch.device(device).type != "cpu":
            module = copy.deepcopy(module).to(device)  # stored networks stay on the CPU
        module.eval()
        for start in range(0, X.shape[0], batch_size):
            rows = X[start : start + batch_size]
            n_rows = rows.shape[0]
            if n_rows < batch_size:
                padding = (batch_size - n_rows, rows.shape[1])
                rows = (
                    sp.vstack([rows, sp.csr_matrix(padding, dtype=rows.dtype)])
                    if sp.issparse(rows)
                    else np.vstack([rows, np.zeros(padding, dtype=rows.dtype)])
                )
            batch = to_batch_tensor(rows, sparse_input).to(device)
            chunks.append(transform(module(batch))[:n_rows])
    return torch.cat(chunks)
