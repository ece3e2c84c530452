"""Custom per-repetition modules (importable, for loky), and a stream, used by
the tests."""

import io
import os
import threading

import torch
from torch import nn


class RecordingNetwork(nn.Module):
    """A linear model that accepts sparse batches and records their layout."""

    supports_sparse_input = True
    layouts = []

    def __init__(self, n_features, n_outputs):
        super().__init__()
        self.linear = nn.Linear(n_features, n_outputs)

    def forward(self, X):
        RecordingNetwork.layouts.append(X.layout)
        if X.layout == torch.sparse_csr:
            X = X.to_dense()
        return self.linear(X)


class DenseOnlyNetwork(nn.Module):
    """A small MLP without sparse support that records its training batches' sizes."""

    batch_rows = []

    def __init__(self, n_features, n_outputs):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_features, 32), nn.ReLU(), nn.Linear(32, n_outputs)
        )

    def forward(self, X):
        assert X.layout == torch.strided
        if self.training:  # not fit's check of a few rows' outputs
            DenseOnlyNetwork.batch_rows.append(X.shape[0])
        return self.net(X)


class WorkerRecordingNetwork(nn.Module):
    """A linear model that records the process and thread of each training batch."""

    workers = set()

    def __init__(self, n_features, n_outputs):
        super().__init__()
        self.linear = nn.Linear(n_features, n_outputs)

    def forward(self, X):
        if self.training:
            WorkerRecordingNetwork.workers.add((os.getpid(), threading.get_ident()))
        return self.linear(X)


class GlobalNormSGD(torch.optim.SGD):
    """SGD along the gradient scaled to unit norm over all its parameters.

    Not elementwise: stacked in one group, a network's step would depend on
    the other networks' gradients.
    """

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        grads = [p.grad for g in self.param_groups for p in g["params"]]
        grads = [g for g in grads if g is not None]
        norm = torch.sqrt(sum((g * g).sum() for g in grads))
        for g in grads:
            g.div_(norm + 1e-12)
        super().step()
        return loss


class NoMetaNetwork(nn.Module):
    """A network torch's meta device cannot build: its ``__init__`` reads a
    tensor's value, which meta tensors do not have."""

    def __init__(self, n_features, n_outputs):
        super().__init__()
        width = int(torch.tensor(8).item())
        self.layers = nn.Sequential(
            nn.Linear(n_features, width), nn.ReLU(), nn.Linear(width, n_outputs)
        )

    def forward(self, X):
        return self.layers(X)


class NoMetaFactory:
    """A class that is not a module but builds one: ``module=`` takes it."""

    def __new__(cls, n_features, n_outputs):
        return NoMetaNetwork(n_features, n_outputs)


class WideNoMetaFactory:
    """Another builder of :class:`NoMetaNetwork`, with other layers."""

    def __new__(cls, n_features, n_outputs):
        net = NoMetaNetwork(n_features, n_outputs)
        net.layers[2] = nn.Linear(8, n_outputs + 1)
        return net


class LinearNetwork(nn.Module):
    """A linear model the meta device can build (``scale`` is unused)."""

    def __init__(self, n_features, n_outputs, scale=None):
        super().__init__()
        self.linear = nn.Linear(n_features, n_outputs)

    def forward(self, X):
        return self.linear(X)


class NegatedNetwork(LinearNetwork):
    """:class:`LinearNetwork`'s layers, another function: the same state dict."""

    def forward(self, X):
        return -self.linear(X)


class DroppedStream(io.RawIOBase):
    """A plain stream whose peer goes away after ``data``: its next read
    raises ``EOFError``, as a dropped connection's does."""

    def __init__(self, data=b""):
        self.data, self.pos = data, 0

    def readable(self):
        return True

    def readinto(self, buffer):
        if self.pos >= len(self.data):
            raise EOFError("connection closed by peer")
        n = min(len(buffer), len(self.data) - self.pos)
        buffer[:n] = self.data[self.pos : self.pos + n]
        self.pos += n
        return n


def device_paths():
    """The device sets of every path switched by ``SKLEARN_MACH_TEST_GROUPED``,
    as this process's sklearn-mach holds them (run in a worker process)."""
    from sklearn_mach import _classifier, _decoding, _network, _optim, _training

    sets = {
        "grouped": _training._GROUPED_DEVICES,
        "sync_free": _optim.LazyAdam._SYNC_FREE_DEVICES,
        "flush": _optim.LazyAdam._FLUSH_DEVICES,
        "staged": _network._HostCopier._STAGED_DEVICES,
        "cut": _network.BucketLoss._CUT_DEVICES,
        "row_sum": _network.MACHNetwork._ROW_SUM_DEVICES,
        "shared": _classifier.MACHClassifier._SHARED_DEVICES,
        "decoding": _decoding._CPU_DEVICES,
        "infer_rows": set(_classifier._INFER_ROWS),
    }
    return {name: sorted(devices) for name, devices in sets.items()}
