"""Importable custom modules for the persistence tests."""

import torch
from torch import nn

from sklearn_mach import MACHNetwork


class TinyMLP(nn.Module):
    """A dense-input MLP with a buffer, built as ``module(n_features, n_outputs)``."""

    def __init__(self, n_features, n_outputs):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_features, 12), nn.ReLU(), nn.Linear(12, n_outputs)
        )
        self.register_buffer("scale", torch.full((n_features,), 0.5))

    def forward(self, X):
        return self.net(X * self.scale)


def make_tiny_mlp(n_features, n_outputs):
    """A module factory function (a callable ``module`` that is not a class)."""
    return TinyMLP(n_features=n_features, n_outputs=n_outputs)


class CountingNet(nn.Module):
    """A module with its own buffer named ``feature_rows`` (as the default
    network's feature map), which training changes."""

    def __init__(self, n_features, n_outputs):
        super().__init__()
        self.linear = nn.Linear(n_features, n_outputs)
        self.register_buffer("feature_rows", torch.zeros(n_features, dtype=torch.int64))

    def forward(self, X):
        if self.training:
            self.feature_rows += 1
        return self.linear(X)


class EagerMLP(TinyMLP):
    """TinyMLP behind an ``n_features`` square mixing buffer, which reads a
    value while it is built: it cannot be built on torch's meta device, so
    load builds it for real with the file's sizes."""

    def __init__(self, n_features, n_outputs):
        mix = torch.eye(n_features)  # first: n_features ** 2 values
        super().__init__(n_features, n_outputs)
        self.register_buffer("mix", mix)
        self.first = float(mix[0, 0].item())

    def forward(self, X):
        return super().forward(X @ self.mix)


class StridedBuffers(nn.Module):
    """A module whose buffers have strides torch calls contiguous but that
    are not 1: one element taken every 4th, and an empty one."""

    def __init__(self, n_features, n_outputs):
        super().__init__()
        self.linear = nn.Linear(n_features, n_outputs)
        self.register_buffer("temperature", torch.full((4,), 2.0)[::4])
        self.register_buffer("nothing", torch.full((4,), 1.0)[::4][:0])

    def forward(self, X):
        return self.linear(X) / self.temperature


class NamedBuffers(nn.Module):
    """A module with a buffer whose name is not ASCII."""

    def __init__(self, n_features, n_outputs):
        super().__init__()
        self.linear = nn.Linear(n_features, n_outputs)
        self.register_buffer("température", torch.full((n_outputs,), 2.0))

    def forward(self, X):
        return self.linear(X) / self.température


class SurrogateBuffer(nn.Module):
    """A module with a buffer whose name holds a lone surrogate."""

    def __init__(self, n_features, n_outputs):
        super().__init__()
        self.linear = nn.Linear(n_features, n_outputs)
        self.register_buffer("scale\ud800", torch.ones(n_outputs))

    def forward(self, X):
        return self.linear(X)


class HugeEmptyBuffer(nn.Module):
    """A module with an empty buffer whose other dimension is 2**62."""

    def __init__(self, n_features, n_outputs):
        super().__init__()
        self.linear = nn.Linear(n_features, n_outputs)
        self.register_buffer("placeholder", torch.empty(2**62, 0))

    def forward(self, X):
        return self.linear(X)


def hashed_network(n_features, n_outputs):
    """A default network hashing its features into 5 rows, as a custom module."""
    return MACHNetwork(
        n_features, n_outputs, hidden_layer_sizes=(8,), n_hashed_features=5
    )


class HashedWrapper(nn.Module):
    """A module holding a hashed MACHNetwork as a layer (``net.feature_rows``)."""

    supports_sparse_input = True

    def __init__(self, n_features, n_outputs):
        super().__init__()
        self.net = hashed_network(n_features, n_outputs)

    def forward(self, X):
        return self.net(X)


class Int32Rows(nn.Module):
    """A module whose own int32 buffer is named ``feature_rows``: not a map."""

    def __init__(self, n_features, n_outputs):
        super().__init__()
        self.linear = nn.Linear(n_features, n_outputs)
        rows = torch.arange(n_features, dtype=torch.int32).flip(0)
        self.register_buffer("feature_rows", rows)

    def forward(self, X):
        return self.linear(X.index_select(1, self.feature_rows))


class TiedHashed(HashedWrapper):
    """HashedWrapper whose layer is registered under a second name too."""

    def __init__(self, n_features, n_outputs):
        super().__init__(n_features, n_outputs)
        self.again = self.net


class UnsavedMap(nn.Module):
    """A hashed network whose map is not saved (a non-persistent buffer), as a
    layer."""

    supports_sparse_input = True

    def __init__(self, n_features, n_outputs):
        super().__init__()
        self.net = hashed_network(n_features, n_outputs)
        rows = self.net._buffers.pop("feature_rows")
        self.net.register_buffer("feature_rows", rows, persistent=False)

    def forward(self, X):
        return self.net(X)


class RenamedMap(HashedWrapper):
    """HashedWrapper whose state dict names the layer ``inner`` (hooks)."""

    def __init__(self, n_features, n_outputs):
        super().__init__(n_features, n_outputs)
        self._register_state_dict_hook(RenamedMap._rename_out)
        self._register_load_state_dict_pre_hook(RenamedMap._rename_in)

    @staticmethod
    def _rename(state, prefix, old, new):
        for key in [k for k in state if k.startswith(prefix + old)]:
            state[prefix + new + key[len(prefix + old) :]] = state.pop(key)

    @staticmethod
    def _rename_out(module, state, prefix, local_metadata):
        RenamedMap._rename(state, prefix, "net.", "inner.")

    @staticmethod
    def _rename_in(state, prefix, *args):
        RenamedMap._rename(state, prefix, "inner.", "net.")


class AliasedMap(HashedWrapper):
    """HashedWrapper whose layer's map is also a buffer of another layer."""

    def __init__(self, n_features, n_outputs):
        super().__init__(n_features, n_outputs)
        self.other = nn.Module()
        self.other.register_buffer("rows", self.net.feature_rows)


class DetachedMap(HashedWrapper):
    """HashedWrapper whose state dict hands out detached tensors (a hook)."""

    def __init__(self, n_features, n_outputs):
        super().__init__(n_features, n_outputs)
        self._register_state_dict_hook(DetachedMap._detach)

    @staticmethod
    def _detach(module, state, prefix, local_metadata):
        for key in list(state):
            state[key] = state[key].detach()
