"""The training loop: skorch nets that train one network or a group of them.

A :class:`Trainer` trains the networks of some repetitions: one
:class:`~sklearn_mach._network.MACHNetwork` (or custom module) on the CPU,
or a :class:`~sklearn_mach._network.GroupedMACHNetwork` of several on an
accelerator (one batched module: a few large kernels per step instead of
many small ones).  Everything a joblib worker needs is importable from here, so
trainers cross process borders (loky, dask) as well as threads.

The data of a fit are turned into torch tensors once
(:class:`TrainingData`), on the device when they fit; each epoch puts
them in batch order with one gather there, and a batch is then a slice,
with no scipy slicing, no host-to-device copy and no host synchronisation
per step.  Randomness is
local: modules are initialised under a lock from per-repetition seeds, and
batches are drawn per network from a :class:`numpy.random.Generator`, so
results do not depend on the joblib backend, on ``n_jobs`` or on the
groups.  They do depend on the device: initial weights are drawn where
they are built, and a GPU's generator gives other numbers than the CPU's.
"""

import contextlib
import copy
import inspect
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp
import torch
from joblib import cpu_count
from sklearn import get_config
from skorch import NeuralNet
from skorch.callbacks import Callback, EpochTimer, PrintLog
from skorch.history import History
from skorch.utils import to_device
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ._device import accelerator_path
from ._network import (
    BucketLoss,
    GroupedMACHNetwork,
    MACHNetwork,
    _float_dtype,
    csr_parts,
    csr_tensor,
    run_networks,
)
from ._optim import LazyAdam

_INIT_LOCK = threading.Lock()

#: Optimizers accepted by name, and whether they take sparse gradients.
OPTIMIZERS = {
    "adam": (LazyAdam, True),
    "sgd": (torch.optim.SGD, True),
}

#: Devices on which fit trains the default networks in groups, as one
#: batched module per group (custom modules always train alone).  Not the
#: CPU: on pypi-maskedword (2 cores, benchmarks/results/cpu_grouping.md) a
#: group of 4 was 10-16% faster than the 4 networks in turn at B=512,
#: batch 256, but 26-46% slower with the defaults (B=2048, batch 1024),
#: and a group holds a permuted copy of the data per member.
#: The CPU too under SKLEARN_MACH_TEST_GROUPED=1
#: (``_device.ACCELERATOR_PATHS_ON_CPU``), which tests and CI set.
_GROUPED_DEVICES = accelerator_path({"cuda"})

#: Optimizers whose update of an entry reads that entry's gradient and
#: state alone (and the step count): they train a group's stacked networks
#: exactly as apart.  Others (a factored second moment as Adafactor's, a
#: line search as LBFGS's, any subclass) could couple the networks of a
#: group, so with them every network trains alone, on any device.
_ELEMENTWISE_OPTIMIZERS = frozenset(
    {
        LazyAdam,
        torch.optim.Adam,
        torch.optim.AdamW,
        torch.optim.Adamax,
        torch.optim.NAdam,
        torch.optim.RAdam,
        torch.optim.SGD,
        torch.optim.Adagrad,
        torch.optim.RMSprop,
        torch.optim.Rprop,
        torch.optim.ASGD,
    }
)


def groups_exactly(optimizer):
    """Whether ``optimizer`` (a name or class) trains grouped networks as it
    trains them apart."""
    return optimizer_spec(optimizer)[0] in _ELEMENTWISE_OPTIMIZERS


def memory_budget(device):
    """Bytes a fit may hold on ``device``: half the free memory of an
    accelerator, scikit-learn's ``working_memory`` on the CPU.

    Free on CUDA counts what torch's caching allocator holds without using
    (an earlier fit's freed tensors), which the driver reports as taken.
    """
    device = torch.device(device)
    if device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0]
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(
            device
        )
        return (free + max(0, cached)) // 2
    return int(get_config()["working_memory"] * 2**20)


def sparse_gradient_pays(X, batch_size, n_rows=None):
    """Whether a sparse input-table gradient beats a dense one for ``X``.

    A sparse gradient costs about a sort of the batch's non-zeros and a few
    passes over their rows; a dense one costs Adam over the whole table
    (``n_rows``, by default ``n_features``).  Measured on the CPU, sparse
    wins once the table has twice the batch's non-zeros.
    """
    if not sp.issparse(X) or X.shape[0] == 0:
        return False
    nnz_per_batch = min(batch_size, X.shape[0]) * X.nnz / X.shape[0]
    return (X.shape[1] if n_rows is None else n_rows) > 2 * nnz_per_batch


def build_module(
    module,
    n_features,
    n_outputs,
    hidden_layer_sizes,
    sparse_gradient,
    seed,
    n_hashed_features=None,
    device=None,
):
    """Instantiate a repetition's module with weights drawn from ``seed``.

    The default :class:`MACHNetwork` draws from a generator of its own,
    seeded with ``seed``: torch's global generator is neither read nor
    reseeded, so threads using torch beside ``fit`` neither change the
    model nor see their own random streams change.  A custom ``module``
    initialises itself from torch's global generator: it is seeded with
    ``seed`` in a forked copy, under a lock, so its weights depend only on
    ``seed`` when repetitions are built by concurrent threads (other
    threads' torch draws during that moment are not isolated).  Built on an
    accelerator (``device``), the weights never cross the bus; ``None``
    builds on torch's current default device (the meta device, to check
    shapes without memory).
    """
    target = torch.device("cpu" if device is None else device)
    placement = contextlib.nullcontext() if device is None else target
    if module is None:
        # the same stream torch.manual_seed(seed) gives the global generator
        # of the device the weights are drawn on (torch's current default
        # device when ``device`` is None), so the same weights
        where = target if device is not None else torch.empty(0).device
        try:
            generator = torch.Generator(device=where).manual_seed(seed)
        except RuntimeError:  # the meta device: nothing is drawn there
            generator = torch.Generator().manual_seed(seed)
        with placement:
            net = MACHNetwork(
                n_features,
                n_outputs,
                hidden_layer_sizes=hidden_layer_sizes,
                sparse_gradient=sparse_gradient,
                n_hashed_features=n_hashed_features,
                feature_seed=seed,
                generator=generator,
            )
        return net if device is None else net.to(target)
    if isinstance(module, type) and issubclass(module, torch.optim.Optimizer):
        raise TypeError(
            f"module={module!r} is an optimizer class: module builds the "
            "network (pass the optimizer as optimizer=)."
        )
    if isinstance(module, torch.nn.Module):
        raise TypeError(
            "module takes a class, or a function, that builds one "
            "torch.nn.Module per repetition from n_features and n_outputs; got "
            f"a {type(module).__name__} instance: pass its class (or a function "
            "building a new one) instead."
        )
    forked = [target] if target.type == "cuda" else []
    with _INIT_LOCK, torch.random.fork_rng(devices=forked), placement:
        # the generators fork_rng restores, and no other: torch.manual_seed
        # would reseed every GPU's for good
        torch.default_generator.manual_seed(seed)
        if target.type == "cuda":
            index = (
                torch.cuda.current_device() if target.index is None else target.index
            )
            torch.cuda.default_generators[index].manual_seed(seed)
        elif target.type != "cpu":  # another backend: torch seeds it with the rest
            torch.manual_seed(seed)
        net = _call_module(module, n_features, n_outputs)
    if not isinstance(net, torch.nn.Module):
        raise TypeError(
            f"module must build a torch.nn.Module, but {module!r}"
            f"(n_features={n_features}, n_outputs={n_outputs}) returned "
            f"a {type(net).__name__}."
        )
    if not any(p.requires_grad for p in net.parameters()):
        raise ValueError(
            f"module must build a network with trainable parameters, but "
            f"{module!r}(n_features={n_features}, n_outputs={n_outputs}) built "
            f"a {type(net).__name__} with none."
        )
    return net if device is None else net.to(target)


def _call_module(module, n_features, n_outputs):
    """``module(n_features=n_features, n_outputs=n_outputs)``; where that
    call raises ``TypeError`` because ``module`` does not take it (its
    signature refuses it, or the message names the two arguments), a
    ``TypeError`` naming ``module``.  A module's own ``TypeError`` from a
    call it takes passes unchanged.  The call comes first: a signature
    (``__wrapped__``, ``__signature__``) may say less than the call takes."""
    try:
        return module(n_features=n_features, n_outputs=n_outputs)
    except TypeError as exc:
        try:
            signature = inspect.signature(module)
            signature.bind(n_features=n_features, n_outputs=n_outputs)
        except (TypeError, ValueError):  # refused, or no signature (a builtin)
            refused = True
        else:  # a pass-through (*args, **kwargs) binds anything: the message tells
            passes_through = any(
                p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
                for p in signature.parameters.values()
            ) and not {"n_features", "n_outputs"} <= set(signature.parameters)
            refused = passes_through and any(
                f"argument '{name}'" in str(exc) for name in ("n_features", "n_outputs")
            )
        if not refused:
            raise
        raise TypeError(
            "module must be a class, or a function, called as "
            "module(n_features=..., n_outputs=...) to build each repetition's "
            f"network; {module!r} does not take that call ({exc})."
        ) from exc


class TrainingData(Dataset):
    """X, the targets of some repetitions and sample weights, as torch tensors.

    Parameters
    ----------
    X : ndarray or scipy CSR matrix of shape (n_samples, n_features)
    targets : ndarray of shape (G, n_samples) or CSR of shape (G * n_samples, B)
        Bucket ids (multiclass) or multi-hot buckets (multilabel) of the
        ``G`` repetitions trained together; in the CSR, repetition ``g``
        owns rows ``[g * n_samples, (g + 1) * n_samples)``.
    weights : ndarray of shape (n_samples,)
    device : str
        Where batches are consumed.  The tensors live there when they fit
        in :func:`memory_budget`, else on the CPU (each batch is copied).
    sparse_input : bool
        Give the module CSR batches (else dense ones).
    """

    def __init__(self, X, targets, weights, device, sparse_input):
        self.device = torch.device(device)
        self.shape = X.shape
        self.sparse_input = sparse_input
        self.multilabel = sp.issparse(targets)
        self.n_groups = (
            targets.shape[0] // max(1, X.shape[0])
            if self.multilabel
            else targets.shape[0]
        )
        self.n_outputs = targets.shape[1] if self.multilabel else None
        self.X = self._tensors(X, X.dtype)
        self.targets = (
            self._tensors(targets, X.dtype)
            if self.multilabel
            else torch.from_numpy(np.ascontiguousarray(targets, dtype=np.int64))
        )
        # A batch's loss is its weighted mean: scaled by a power of 2 (exact)
        # to a largest weight in [1, 2), weights of any magnitude survive the
        # cast to float32
        weights = np.asarray(weights, dtype=np.float64)
        if len(weights) and weights.max() > 0:
            weights = np.ldexp(weights, 1 - np.frexp(weights.max())[1])
        self.weights = torch.from_numpy(np.array(weights, dtype=_float_dtype(X.dtype)))
        # the tensors, each epoch's permuted copy (G copies of X) and the
        # int64 indices that build it (about twice the copy)
        size = sum(t.numel() * t.element_size() for t in self._all_tensors())
        size += 3 * self.n_groups * size
        self.store = (
            self.device if size <= memory_budget(self.device) else torch.device("cpu")
        )
        for name in ("X", "targets"):
            value = getattr(self, name)
            if isinstance(value, dict):
                value.update(
                    {key: value[key].to(self.store) for key in ("indptr", "col", "val")}
                )
            else:
                setattr(self, name, value.to(self.store))
        self.weights = self.weights.to(self.store)

    @staticmethod
    def _tensors(M, dtype):
        if not sp.issparse(M):
            return torch.from_numpy(np.array(M, dtype=_float_dtype(dtype)))
        return dict(zip(("indptr", "col", "val"), csr_parts(M, dtype)))

    def _all_tensors(self):
        for value in (self.X, self.targets, self.weights):
            if isinstance(value, dict):
                yield from (value["indptr"], value["col"], value["val"])
            else:
                yield value

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, i):  # pragma: no cover - batches are cut by batches()
        raise TypeError("TrainingData is consumed by BatchIterator, not item by item.")

    def _permuted(self, value, rows, cuts):
        """Rows ``rows`` of ``value``, on the store, every row as often.

        A CSR comes back as ``(pointers, indptr, col, val)``, ``pointers``
        being its row pointers at the rows ``cuts``, on the host: one
        transfer per epoch, so that batches are cut without a device sync.
        """
        if not isinstance(value, dict):
            return value[rows]
        indptr = value["indptr"]
        starts = indptr[rows]
        lengths = indptr[rows + 1] - starts
        new_indptr = torch.zeros(len(rows) + 1, dtype=torch.long, device=self.store)
        torch.cumsum(lengths, 0, out=new_indptr[1:])
        # each row is in ``rows`` equally often: the total is known here
        total = value["col"].numel() * len(rows) // (len(indptr) - 1)
        # entry j of the result, in row i, is entry j - new_indptr[i] + starts[i]
        source = torch.repeat_interleave(
            starts - new_indptr[:-1], lengths, output_size=total
        ) + torch.arange(total, device=self.store)
        pointers = new_indptr[torch.as_tensor(cuts, device=self.store)].cpu().numpy()
        return pointers, new_indptr, value["col"][source], value["val"][source]

    def _put(self, t):
        return t if self.store == self.device else t.to(self.device, non_blocking=True)

    def _slice(self, value, step, start, stop, n_cols):
        """Rows ``start:stop`` (batch ``step``) of a permuted ``value``, on device."""
        if not isinstance(value, tuple):
            return self._put(value[start:stop])
        pointers, indptr, col, val = value
        a, b = int(pointers[step]), int(pointers[step + 1])
        return csr_tensor(
            self._put(indptr[start : stop + 1] - a),
            self._put(col[a:b]),
            self._put(val[a:b]),
            (stop - start, n_cols),
        )

    def batches(self, orders, batch_size):
        """Yield ``(X, targets, weights)`` batches, on the device.

        Network ``g`` of the group reads the rows ``orders[g]`` in turn,
        ``batch_size`` at a time: a batch stacks the ``G`` networks' rows
        (``G * m`` rows of ``X``; targets of shape ``(G, m)``, or
        ``(G, m, B)`` multi-hot; weights of shape ``(G, m)``).  So every
        network sees the batches it would see if trained alone.  The rows
        are put in this step-major order once per epoch, on the store (one
        gather), and a batch is then a slice, with no host synchronisation.
        """
        G = self.n_groups
        orders = torch.from_numpy(np.asarray(orders, dtype=np.int64)).to(self.store)
        orders = orders.reshape(G, -1)
        n = orders.shape[1]
        full = (n // batch_size) * batch_size
        bounds = list(range(0, n, batch_size)) + [n]
        cuts = [G * b for b in bounds]

        def step_major(a):  # (G, n) -> the G rows of each step, step by step
            head = a[:, :full].reshape(G, -1, batch_size).transpose(0, 1)
            return torch.cat([head.reshape(-1), a[:, full:].reshape(-1)])

        layout = step_major(orders)
        # the target of network g for sample i is row g * n_samples + i
        first = torch.arange(G, device=self.store)[:, None] * len(self)
        target_rows = step_major(orders + first)
        X = self._permuted(self.X, layout, cuts)
        weights = self.weights[layout]
        targets = (
            self._permuted(self.targets, target_rows, cuts)
            if self.multilabel
            else self.targets.reshape(-1)[target_rows]
        )
        for step, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
            m, rows = b - a, (G * a, G * b)
            batch_X = self._slice(X, step, *rows, self.shape[1])
            if batch_X.layout == torch.sparse_csr and not self.sparse_input:
                batch_X = batch_X.to_dense()
            y = self._slice(targets, step, *rows, self.n_outputs)
            y = y.to_dense().view(G, m, -1) if self.multilabel else y.view(G, m)
            yield batch_X, y, self._slice(weights, step, *rows, None).view(G, m)


class BatchIterator:
    """Shuffled mini-batches of a :class:`TrainingData`, drawn by local generators.

    Used as skorch's ``iterator_train``.  Every epoch draws a new,
    reproducible permutation per network (``seed`` holds one seed per
    network of the group); rows are sorted within a batch (the batch is a
    set) for contiguous reads.
    """

    def __init__(self, dataset, batch_size, shuffle=False, seed=0):
        self.dataset = dataset
        # past the data, one batch of all of it (the same batches and order
        # as batch_size=len(dataset)); 2**62 failed in numpy's reshape
        self.batch_size = max(1, min(int(batch_size), len(dataset)))
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def __len__(self):
        return -(-len(self.dataset) // self.batch_size)

    def __iter__(self):
        n = len(self.dataset)
        seeds = np.broadcast_to(
            np.asarray(self.seed, dtype=np.int64), (self.dataset.n_groups,)
        )
        seeds = [int(s) + self.epoch for s in seeds]
        if len(seeds) == 1:
            orders = self._order(seeds[0], n)[None]
        else:
            # A group's orders are independent draws: make them on several
            # cores (numpy's sort and, in part, its permutation leave the GIL).
            workers = min(len(seeds), cpu_count())
            with ThreadPoolExecutor(workers) as pool:
                orders = np.stack(list(pool.map(lambda s: self._order(s, n), seeds)))
        self.epoch += 1
        return self.dataset.batches(orders, self.batch_size)

    def _order(self, seed, n):
        # Epoch e of an iterator seeded s draws the permutation of seed s + e:
        # E epochs in one call equal E calls seeded s, s + 1, ...
        if not self.shuffle:
            return np.arange(n)
        order = np.random.default_rng(seed).permutation(n)
        full = n - n % self.batch_size
        order[:full] = np.sort(
            order[:full].reshape(-1, self.batch_size), axis=1
        ).ravel()
        order[full:] = np.sort(order[full:])
        return order


class EpochProgressBar(Callback):
    """A tqdm bar over a trainer's epochs, showing the training loss."""

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
        # dropped: a trainer returned by a worker process for more epochs
        # (early stopping) is pickled, and a closed tqdm bar recursed there
        self.bar_.close()
        del self.bar_


class MACHNet(NeuralNet):
    """skorch's NeuralNet with a lean training epoch.

    Each step computes every network's weighted loss (:class:`BucketLoss`),
    backpropagates their sum and steps the optimizer; losses are summed on
    the device and read once per epoch, so a step never waits for the
    device.  The history records per epoch ``train_loss`` (the mean over
    the networks) and ``train_losses`` (one per network).  Callbacks are
    notified of training and epoch events, not of batches.
    """

    #: Epochs its networks trained before this net's history (earlier
    #: partial_fit calls, earlier epochs under early stopping): the printed
    #: table numbers epochs as ``histories_`` does.
    first_epoch = 0

    def get_default_callbacks(self):
        return [("epoch_timer", EpochTimer()), ("print_log", PrintLog())]

    def on_epoch_begin(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        self.history.new_epoch()
        self.history.record("epoch", self.first_epoch + len(self.history))

    def partial_fit(self, X, y=None, classes=None, **fit_params):
        """skorch's ``partial_fit`` without its ``except KeyboardInterrupt:
        pass``, which ended the epochs early and returned a half-trained
        network as if training had finished: an interrupt aborts the fit,
        and the estimator is left as it was."""
        if not self.initialized_:
            self.initialize()
        routing_method = fit_params.pop("_routing_method", "partial_fit")
        self.notify("on_train_begin", X=X, y=y)
        self.fit_loop(X, y, _routing_method=routing_method, **fit_params)
        self.notify("on_train_end", X=X, y=y)
        return self

    def run_single_epoch(self, iterator, training, prefix, step_fn, **fit_params):
        if iterator is None:
            return
        self._set_training(True)
        total, weight, n_batches = 0.0, 0.0, 0
        for X, y, w in iterator:
            losses = self._train_step(X, y, w)
            batch_weight = w.sum(dim=-1)  # each network's own rows
            total = total + losses.detach() * batch_weight
            weight = weight + batch_weight
            n_batches += 1
        per_network = (total / weight).tolist()  # the one synchronisation
        self.history.record(f"{prefix}_loss", float(np.mean(per_network)))
        self.history.record(f"{prefix}_losses", per_network)
        self.history.record(f"{prefix}_batch_count", n_batches)

    def _train_step(self, X, y, w):
        """One optimizer step on a batch; the networks' losses, on the device."""
        losses = []
        # a group's batch stacks each network's own rows (TrainingData.batches)
        stacked = isinstance(self.module_, GroupedMACHNetwork)

        def closure():
            self.optimizer_.zero_grad(set_to_none=True)
            logits = self.module_(X, stacked=True) if stacked else self.module_(X)
            losses.append(self.criterion_(logits, y, w))
            loss = losses[-1].sum()
            loss.backward()
            return loss

        self.optimizer_.step(closure)
        return losses[-1]


def optimizer_spec(optimizer):
    """The optimizer class for ``optimizer`` and whether it takes sparse gradients."""
    if isinstance(optimizer, str):
        return OPTIMIZERS[optimizer]
    if not (
        isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer)
    ):
        raise TypeError(
            f"optimizer must be one of {sorted(OPTIMIZERS)} or a subclass of "
            f"torch.optim.Optimizer, got {optimizer!r}."
        )
    return optimizer, False


def _unshared_state(state, device_type):
    """A copy of an optimizer's ``state_dict`` that loading it will not update.

    ``load_state_dict`` keeps the given tensors where they already have the
    parameter's device and dtype, so on the CPU it would train the caller's
    state in place; a failed ``partial_fit`` must leave that as it was.
    Elsewhere it copies the moments to the device but keeps the ``step``
    tensors of Adam and its kin as given (torch 2.13), so those are cloned.
    """
    if device_type == "cpu":
        return copy.deepcopy(state)
    return {
        **state,
        "state": {
            key: {
                name: value.clone()
                if name == "step" and isinstance(value, torch.Tensor)
                else value
                for name, value in entry.items()
            }
            for key, entry in state["state"].items()
        },
    }


class Trainer:
    """Trains the networks of some repetitions: one, or a group as one module.

    Parameters
    ----------
    repetitions : list of int
        The repetitions whose networks this trainer owns.
    modules : list of torch.nn.Module
        Their initial modules (copied).  More than one, or ``grouped``,
        trains them as a :class:`GroupedMACHNetwork`.
    grouped : bool
    multilabel : bool
    optimizer : str or torch.optim.Optimizer subclass
    lr : float
    batch_size : int
    device : str
    verbose : int
        0: silent; 1: a progress bar over the epochs; 2 and above: also
        skorch's per-epoch table.
    description : str
        Label of the progress bar.
    optimizer_state : dict, default=None
        State to continue from (see :meth:`optimizer_state`).
    n_outputs : int, default=None
        The number of buckets ``B``: each step checks that the networks
        output ``(batch, B)`` scores (see :class:`BucketLoss`).
    first_epoch : int, default=0
        Epochs the networks trained before (earlier ``partial_fit`` calls):
        where the printed epoch numbers start.
    """

    def __init__(
        self,
        repetitions,
        modules,
        *,
        grouped,
        multilabel,
        optimizer,
        lr,
        batch_size,
        device,
        verbose=0,
        description="network",
        optimizer_state=None,
        n_outputs=None,
        first_epoch=0,
    ):
        self.repetitions = list(repetitions)
        self.grouped = grouped
        self.n_outputs = n_outputs
        optimizer_cls, sparse_ok = optimizer_spec(optimizer)
        modules = [copy.deepcopy(m).train() for m in modules]
        # an optimizer without sparse updates trains dense input gradients;
        # the networks it returns keep their own setting, as split() rebuilds
        # grouped ones from what built them
        self._sparse_gradients = [getattr(m, "sparse_gradient", None) for m in modules]
        for m in modules:
            if not sparse_ok and getattr(m, "sparse_gradient", False):
                m.sparse_gradient = False
        module = GroupedMACHNetwork(modules) if grouped else modules[0]
        self.net = MACHNet(
            module=module,
            criterion=BucketLoss,
            criterion__multilabel=multilabel,
            criterion__n_outputs=n_outputs,
            criterion__n_networks=len(modules) if grouped else None,
            optimizer=optimizer_cls,
            lr=lr,
            batch_size=batch_size,
            train_split=None,
            iterator_train=BatchIterator,
            iterator_train__shuffle=True,
            device=device,
            callbacks=[("progress", EpochProgressBar(description, 0))]
            if verbose
            else None,
            verbose=int(verbose >= 2),
        )
        self.net.initialize()
        self.net.first_epoch = first_epoch  # counted on by run
        if optimizer_state is not None:
            self.net.optimizer_.load_state_dict(
                _unshared_state(optimizer_state, torch.device(device).type)
            )
            for group in self.net.optimizer_.param_groups:
                group["lr"] = lr  # the current lr, not the stored one
        self.histories = [History() for _ in self.repetitions]

    def run(self, X, targets, weights, epochs, seeds):
        """Train ``epochs`` epochs over ``X``.

        ``targets`` are in :class:`TrainingData`'s layout; network ``g``'s
        batch order is drawn from ``seeds[g]``, so it does not depend on the
        other networks trained with it.
        """
        module = self.net.module_
        data = TrainingData(
            X,
            targets,
            weights,
            self.net.device,
            sp.issparse(X) and getattr(module, "supports_sparse_input", False),
        )
        self.net.max_epochs = epochs
        # read by get_iterator, no re-initialisation
        self.net.iterator_train__seed = [int(s) for s in seeds]
        for _, callback in self.net.callbacks_:
            if isinstance(callback, EpochProgressBar):
                callback.total = epochs
        self.net.partial_fit(data, y=None)
        self.net.first_epoch += epochs
        for row in self.net.history[-epochs:]:
            for history, loss in zip(self.histories, row["train_losses"]):
                history.new_epoch()
                history.record("epoch", len(history))
                history.record("train_loss", loss)
                history.record("dur", row["dur"])
        self.net.history.clear()
        return self

    def networks(self, take=False):
        """The trained networks, on the CPU in eval mode: copies, or with
        ``take`` (the trainer is done with it) the module itself."""
        if self.net is None:
            return self._finished[0]
        module = self.net.module_
        if self.grouped:
            return module.split()
        # a copy of every weight per partial_fit call spared; a custom module
        # may hold tensors of its last batch's graph, which a copy refuses
        if take and type(module) is MACHNetwork:
            for parameter in module.parameters():
                parameter.grad = None
            net = module.to("cpu").eval()
        else:
            net = copy.deepcopy(module).to("cpu").eval()
        if self._sparse_gradients[0] is not None:
            net.sparse_gradient = self._sparse_gradients[0]
        return [net]

    def outputs(self, X, transform, batch_size):
        """Bucket outputs of the current networks for rows ``X`` (list of G tensors)."""
        module = self.net.module_
        return run_networks(
            [module],
            X,
            self.net.device,
            transform,
            batch_size,
            grouped=self.grouped,
            n_outputs=self.n_outputs,
        )

    def optimizer_state(self):
        """The optimizer's state, on the CPU, to continue training later."""
        if self.net is None:
            return self._finished[1]
        return _to_cpu(self.net.optimizer_.state_dict())

    def finish(self, keep_optimizer_state):
        """Keep the trained networks (and optionally the optimizer state) on the
        CPU and drop the module, the optimizer and their device memory."""
        state = self.optimizer_state() if keep_optimizer_state else None
        self._finished = (self.networks(take=True), state)
        self.net = None
        return self


def _to_cpu(state):
    """An optimizer state dict with its tensors on the CPU.

    skorch's ``to_device`` moves the tensors; the walk is ours because a
    state dict also holds plain numbers (steps, betas), which ``to_device``
    would try to move too.
    """
    if torch.is_tensor(state):
        return to_device(state, "cpu")
    if isinstance(state, dict):
        return {key: _to_cpu(value) for key, value in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(_to_cpu(value) for value in state)
    return state


def train(trainer, X, targets, weights, epochs, seeds, n_threads, finish=None):
    """Run ``trainer`` for ``epochs`` epochs (a joblib task); return it.

    ``finish``: ``None`` keeps the trainer ready for more epochs; a bool
    finishes it (see :meth:`Trainer.finish`), so that a worker returns only
    the trained networks and, if asked, the optimizer state.
    """
    previous = torch.get_num_threads()
    if n_threads is not None and n_threads != previous:
        torch.set_num_threads(n_threads)
    try:
        trainer.run(X, targets, weights, epochs, seeds)
        return trainer if finish is None else trainer.finish(finish)
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


def group_repetitions(n_repetitions, grouped, bytes_per_network, device, n_workers=1):
    """Split the repetitions into the groups trained together.

    Without grouping every repetition is its own group.  With it, there
    are as few groups as :func:`memory_budget` allows (one, of all ``R``,
    when they fit) and at least ``min(R, n_workers)``, so that every
    joblib worker gets one; their sizes differ by one at most, so that
    workers running side by side finish together.  A network's batches do
    not depend on its group (:meth:`TrainingData.batches`), so neither does
    the model, up to rounding: batched kernels of another group size may
    sum in another order (the CPU-forced grouped path gave probabilities
    4.8e-7 apart across ``n_jobs`` and ``working_memory``).
    """
    if not grouped:
        return [[r] for r in range(n_repetitions)]
    largest = max(1, memory_budget(device) // max(1, bytes_per_network))
    n_groups = max(min(n_repetitions, max(1, n_workers)), -(-n_repetitions // largest))
    size, extra = divmod(n_repetitions, n_groups)
    bounds = [g * size + min(g, extra) for g in range(n_groups + 1)]
    return [list(range(bounds[g], bounds[g + 1])) for g in range(n_groups)]
