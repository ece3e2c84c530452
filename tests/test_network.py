"""The per-repetition network, its grouped form, and the loss."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch.nn import functional as F

from sklearn_mach import MACHClassifier, MACHNetwork
from sklearn_mach import _network as network_module
from sklearn_mach import _training as training_module
from sklearn_mach._network import (
    BucketLoss,
    GroupedMACHNetwork,
    _HostCopier,
    csr_to_torch,
    run_networks,
)

from .test_optim import _subnormal


# 7 rows: dense batches pooled into the rows; 30 (more rows than features):
# the rows gathered for the features
@pytest.mark.parametrize("n_hashed_features", [None, 7, 30])
@pytest.mark.parametrize("sparse", [False, True])
def test_grouped_forward_equals_separate_networks(n_hashed_features, sparse):
    networks = [
        MACHNetwork(20, 6, (8, 5), n_hashed_features=n_hashed_features, feature_seed=s)
        for s in range(3)
    ]
    grouped = GroupedMACHNetwork(networks)
    assert grouped.input_weight.dim() == 2  # one 2-D table: sparse gradients reach it
    X = sp.random(11, 20, density=0.3, format="csr", random_state=0, dtype=np.float32)
    batch = csr_to_torch(X) if sparse else torch.from_numpy(X.toarray())
    with torch.no_grad():
        out = grouped(batch)
        assert out.shape == (3, 11, 6)
        for g, net in enumerate(networks):
            torch.testing.assert_close(out[g], net(batch), rtol=1e-5, atol=1e-6)
        # stacked: network g reads only its own block of rows (training)
        X3 = sp.random(
            33, 20, density=0.3, format="csr", random_state=1, dtype=np.float32
        )
        stacked = csr_to_torch(X3) if sparse else torch.from_numpy(X3.toarray())
        out = grouped(stacked, stacked=True)
        assert out.shape == (3, 11, 6)
        for g, net in enumerate(networks):
            block = X3[11 * g : 11 * (g + 1)]
            block = csr_to_torch(block) if sparse else torch.from_numpy(block.toarray())
            torch.testing.assert_close(out[g], net(block), rtol=1e-5, atol=1e-6)
        with pytest.raises(ValueError, match="cannot be split among 3"):
            grouped(batch[:10] if not sparse else csr_to_torch(X[:10]), stacked=True)
        for net, back in zip(networks, grouped.split()):
            assert not back.training and back.init_kwargs == net.init_kwargs
            torch.testing.assert_close(back(batch), net(batch))
            for (name, a), (_, b) in zip(
                net.state_dict().items(), back.state_dict().items()
            ):
                assert torch.equal(a, b), name


def _largest_allocation(call):
    """Bytes of the largest tensor ``call`` allocates on the CPU (torch's)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        call()
    return max(
        (e.cpu_memory_usage for e in prof.events() if e.cpu_memory_usage > 0),
        default=0,
    )


@pytest.mark.parametrize("grouped", [False, True])
def test_dense_hashed_input_never_gathers_a_row_per_feature(grouped):
    # X @ input_weight[feature_rows] built an (n_features, width) table per
    # batch: one row hashed 16,384 features into 1 row of width 8,192 (a
    # crafted file of 0.2 MB) made a one-row predict allocate 1 GiB.  Pooled
    # into the table's rows first, a batch costs (batch, n_rows).
    net = MACHNetwork(16384, 8192, (), n_hashed_features=1, feature_seed=0)
    module = GroupedMACHNetwork([net, net]) if grouped else net
    X = torch.rand(4, 16384)
    with torch.no_grad():
        out = module(X)
        largest = _largest_allocation(lambda: module(X))
    # no hidden layer: the logits are the input layer's
    expected = X.sum(1, keepdim=True) @ net.input_weight + net.input_bias
    # sums of 16,384 products, in another order
    torch.testing.assert_close(
        out[0] if grouped else out, expected, rtol=1e-4, atol=1e-3
    )
    assert largest < 2**20, largest  # the outputs: 2 x 4 x 8,192 floats


def test_grouped_sparse_gradient_lands_on_the_table_rows_of_the_batch():
    # The crash on CUDA: a sparse gradient could not flow back through the
    # reshape of a stacked 3-D table.  Network g's rows of the 2-D table get
    # exactly the gradient network g gets alone.
    networks = [
        MACHNetwork(5000, 4, (8,), sparse_gradient=True, feature_seed=s)
        for s in range(3)
    ]
    grouped = GroupedMACHNetwork(networks)
    X = sp.random(
        48, 5000, density=0.001, format="csr", random_state=1, dtype=np.float32
    )
    # stacked batch: network g reads rows [16 g, 16 (g + 1))
    batch = csr_to_torch(X)
    grouped(batch, stacked=True).sum().backward()
    assert grouped.input_weight.grad.is_sparse
    dense = grouped.input_weight.grad.to_dense().view(3, 5000, 8)
    for g, net in enumerate(networks):
        block = X[16 * g : 16 * (g + 1)]
        net(csr_to_torch(block))[None].sum().backward()
        torch.testing.assert_close(dense[g], net.input_weight.grad.to_dense())
        touched = np.unique(block.indices)
        assert set(torch.nonzero(dense[g].abs().sum(1)).ravel().tolist()) <= set(
            touched
        )


@pytest.mark.parametrize("chunk", [7, 1 << 24], ids=["chunks-of-7", "one-chunk"])
def test_host_copies_staged_in_chunks_equal_their_source(chunk, monkeypatch):
    # A GPU's weights reach the host through one reused (pinned) buffer, in
    # chunks; here the same staging on the CPU.
    monkeypatch.setattr(_HostCopier, "_STAGED_DEVICES", {"cpu", "cuda"})
    monkeypatch.setattr(_HostCopier, "CHUNK", chunk)
    copier = _HostCopier()
    gen = torch.Generator().manual_seed(0)
    sources = [
        torch.randn(5, 11, generator=gen).T,  # not contiguous; 55 = 7 * 7 + 6
        torch.randn(3, generator=gen),  # shorter than the buffer now held
        torch.randn(4, 4, generator=gen, dtype=torch.float64),  # a buffer of its own
        torch.empty(0, 8),
    ]
    for src in sources:
        dst = torch.empty(src.shape, dtype=src.dtype)
        copier(src, dst)
        assert torch.equal(dst, src)
    assert {dtype: len(b) for dtype, b in copier.buffers.items()} == {
        torch.float32: min(chunk, 55),
        torch.float64: min(chunk, 16),
    }
    # and a group split back into networks, every tensor through the buffer
    networks = [
        MACHNetwork(30, 6, (8,), n_hashed_features=9, feature_seed=s) for s in range(2)
    ]
    for net, back in zip(networks, GroupedMACHNetwork(networks).split()):
        for (name, a), (_, b) in zip(
            net.state_dict().items(), back.state_dict().items()
        ):
            assert torch.equal(a, b), name


def test_grouped_network_refuses_networks_of_other_shapes():
    with pytest.raises(ValueError, match="identical shapes"):
        GroupedMACHNetwork([MACHNetwork(5, 3), MACHNetwork(5, 4)])


@pytest.mark.parametrize("multilabel", [False, True])
def test_bucket_loss_is_each_networks_weighted_loss(multilabel):
    # Each network has its own batch: its own targets and its own weights.
    rng = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 10, 4, generator=rng)
    weights = torch.rand(3, 10, generator=rng)
    if multilabel:
        targets = (torch.rand(3, 10, 4, generator=rng) > 0.5).float()
    else:
        targets = torch.randint(0, 4, (3, 10), generator=rng)
    losses = BucketLoss(multilabel)(logits, targets, weights)
    for g in range(3):
        if multilabel:
            per = F.binary_cross_entropy_with_logits(
                logits[g], targets[g], reduction="none"
            ).mean(1)
        else:
            per = F.cross_entropy(logits[g], targets[g], reduction="none")
        torch.testing.assert_close(
            losses[g], (per * weights[g]).sum() / weights[g].sum()
        )
    # a single network's (batch, B) logits, with (batch,) weights
    one = BucketLoss(multilabel)(logits[0], targets[:1], weights[0])
    torch.testing.assert_close(one, losses[:1])
    shared = BucketLoss(multilabel)(logits, targets, weights[0])  # one weight row
    torch.testing.assert_close(
        shared[1:],
        BucketLoss(multilabel)(logits[1:], targets[1:], weights[0].expand(2, 10)),
    )


def test_bucket_loss_of_tiny_and_zero_weights():
    # the weighted mean for any positive total, however small; 0 (not
    # 0 / 0) for a network whose batch weights are all 0
    rng = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 10, 4, generator=rng)
    targets = torch.randint(0, 4, (3, 10), generator=rng)
    weights = torch.rand(3, 10, generator=rng)
    reference = BucketLoss()(logits, targets, weights)
    weights[1] *= 1e-39  # subnormal weights, a subnormal total
    weights[2] = 0
    losses = BucketLoss()(logits, targets, weights)
    torch.testing.assert_close(losses[:2], reference[:2], rtol=1e-3, atol=0)
    assert losses[2] == 0
    logits.requires_grad_(True)
    BucketLoss()(logits, targets, weights).sum().backward()
    assert torch.isfinite(logits.grad).all() and (logits.grad[2] == 0).all()


def test_bucket_loss_has_no_subnormal_gradient(monkeypatch):
    # A confident network's log-probabilities fall below -87, where float32
    # exp gives subnormals, which CPUs process 25-50x slower.  On the CPU
    # the loss stays exact and its gradient is free of them; CUDA keeps
    # torch's fused kernels, whose gradient has them.
    rng = torch.Generator().manual_seed(0)
    logits = 40 * torch.randn(2, 64, 300, generator=rng)
    targets = torch.randint(0, 300, (2, 64), generator=rng)
    weights = torch.rand(2, 64, generator=rng)
    exact = logits.double().requires_grad_()
    per = F.cross_entropy(
        exact.reshape(-1, 300), targets.reshape(-1), reduction="none"
    ).view(2, 64)
    expected = (per * weights).sum(1) / weights.sum(1)
    expected.sum().backward()
    subnormals = {}
    for name, devices in [("cut", {"cpu"}), ("torch", set())]:
        monkeypatch.setattr(BucketLoss, "_CUT_DEVICES", devices)
        ours = logits.clone().requires_grad_()
        losses = BucketLoss()(ours, targets, weights)
        losses.sum().backward()
        torch.testing.assert_close(losses, expected.float())
        torch.testing.assert_close(ours.grad, exact.grad.float(), rtol=0, atol=1e-6)
        subnormals[name] = _subnormal(ours.grad)
    assert subnormals["torch"] > 0
    assert subnormals["cut"] == 0
    # a target far below the largest logit still gets its full gradient
    monkeypatch.setattr(BucketLoss, "_CUT_DEVICES", {"cpu"})
    far = torch.tensor([[0.0, 500.0, -500.0]], requires_grad=True)
    loss = BucketLoss()(far, torch.tensor([[2]]), torch.ones(1, 1))
    assert float(loss.detach()) == pytest.approx(1000.0)
    loss.backward()
    torch.testing.assert_close(far.grad, torch.tensor([[0.0, 1.0, -1.0]]))
    # the backward reuses its saved probabilities in place: a second one
    # raises instead of returning a wrong gradient
    loss = BucketLoss()(far, torch.tensor([[0]]), torch.ones(1, 1))
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_run_networks_does_not_depend_on_the_other_rows():
    networks = [MACHNetwork(30, 5, (16,), feature_seed=s).eval() for s in range(2)]
    X = sp.random(300, 30, density=0.2, format="csr", random_state=0, dtype=np.float32)
    full = run_networks(networks, X, "cpu", "softmax", 64)
    part = run_networks(networks, X[7:50], "cpu", "softmax", 64)
    for a, b in zip(full, part):
        assert a.shape == (300, 5)
        torch.testing.assert_close(a[7:50], b, rtol=0, atol=0)
    grouped = run_networks(
        [GroupedMACHNetwork(networks)], X, "cpu", "softmax", 64, grouped=True
    )
    for a, b in zip(full, grouped):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_network_computes_in_float64_when_converted():
    net = MACHNetwork(10, 3, (4,)).to(torch.float64)
    X = sp.random(5, 10, density=0.5, format="csr", random_state=0, dtype=np.float64)
    assert net(csr_to_torch(X)).dtype == torch.float64


def test_subclasses_overriding_reset_parameters_still_build():
    # fbb52db passed a generator to reset_parameters unconditionally, and a
    # subclass with the argument-free signature no longer built (nor loaded).
    class ZeroBias(MACHNetwork):
        def reset_parameters(self):
            super().reset_parameters()
            torch.nn.init.zeros_(self.input_bias)

    net = ZeroBias(20, 4, hidden_layer_sizes=(8,))
    assert torch.equal(net.input_bias, torch.zeros(8))
    X = np.random.RandomState(0).rand(30, 20)
    y = np.arange(30) % 3
    clf = MACHClassifier(
        module=ZeroBias, n_buckets=4, n_repetitions=2, max_epochs=1, random_state=0
    ).fit(X, y)
    assert clf.predict(X).shape == (30,)


needs_onednn = pytest.mark.skipif(
    network_module._LINEAR_OP is None, reason="this torch has no oneDNN linear"
)


def _count_onednn_calls(monkeypatch):
    """Count the oneDNN products; every call still computes."""
    calls = []
    op = network_module._LINEAR_OP

    def counted(*args):
        calls.append(args[0].shape)
        return op(*args)

    monkeypatch.setattr(network_module, "_LINEAR_OP", counted)
    return calls


@needs_onednn
@pytest.mark.parametrize("sparse", [False, True])
def test_onednn_linear_layers_compute_what_torch_computes(sparse, monkeypatch):
    X = sp.random(13, 40, density=0.2, format="csr", random_state=0, dtype=np.float32)
    batch = csr_to_torch(X) if sparse else torch.from_numpy(X.toarray())
    target = torch.randn(13, 6, generator=torch.Generator().manual_seed(1))
    results = {}
    for onednn in (False, True):
        monkeypatch.setattr(network_module, "_ONEDNN_LINEAR", onednn)
        calls = _count_onednn_calls(monkeypatch)
        torch.manual_seed(0)
        net = MACHNetwork(40, 6, (16, 8), n_hashed_features=25)
        out = net(batch)
        (out * target).sum().backward()
        results[onednn] = [out.detach()] + [p.grad for p in net.parameters()]
        # two linear layers after the table: one product each forward,
        # two each backward (their inputs' and their weights' gradients)
        assert len(calls) == (2 + 4 if onednn else 0)
    for ours, theirs in zip(results[True], results[False]):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


@needs_onednn
def test_onednn_linear_falls_back_where_it_does_not_apply(monkeypatch):
    monkeypatch.setattr(network_module, "_ONEDNN_LINEAR", True)
    calls = _count_onednn_calls(monkeypatch)
    net = MACHNetwork(10, 4, (8,))
    net(torch.zeros(0, 10)).sum().backward()  # no rows
    assert net.double()(torch.ones(3, 10, dtype=torch.float64)).dtype == torch.float64
    assert calls == []


@needs_onednn
@pytest.mark.filterwarnings("ignore:TF32 acceleration on top of oneDNN")
def test_onednn_linear_layers_keep_hooks_and_torch_features(monkeypatch):
    from torch.func import functional_call, grad, vmap
    from torch.nn.utils import prune

    monkeypatch.setattr(network_module, "_ONEDNN_LINEAR", True)
    torch.manual_seed(0)
    net = MACHNetwork(12, 5, (8,))
    x = torch.randn(7, 12)
    calls = _count_onednn_calls(monkeypatch)
    with torch.no_grad():  # what the output layer reads
        hidden = torch.relu(x @ net.input_weight + net.input_bias)
    torch.testing.assert_close(
        net(x), F.linear(hidden, net.layers[1].weight, net.layers[1].bias)
    )
    assert len(calls) == 1
    # hooks on the layers and their container run; pruning (a pre-hook) works
    ran = []
    net.layers[1].register_forward_pre_hook(lambda *_: ran.append("pre"))
    net.layers.register_forward_hook(lambda *_: ran.append("layers"))
    prune.l1_unstructured(net.layers[1], "weight", amount=0.5)
    pruned = net(x)
    assert ran == ["pre", "layers"]
    torch.testing.assert_close(
        pruned, F.linear(hidden, net.layers[1].weight, net.layers[1].bias)
    )
    prune.remove(net.layers[1], "weight")
    # a bias with strides (oneDNN reads it as contiguous)
    params = dict(net.named_parameters())
    strided = torch.randn(10)[::2]
    params["layers.1.bias"] = strided
    out = functional_call(net, params, (x,))
    torch.testing.assert_close(out, F.linear(hidden, net.layers[1].weight, strided))
    # second derivatives, autocast, oneDNN switched off, torch.func
    weight = net.layers[1].weight
    (g,) = torch.autograd.grad(net(x).square().sum(), weight, create_graph=True)
    (gg,) = torch.autograd.grad(g.square().sum(), weight)
    monkeypatch.setattr(network_module, "_ONEDNN_LINEAR", False)
    (g0,) = torch.autograd.grad(net(x).square().sum(), weight, create_graph=True)
    (gg0,) = torch.autograd.grad(g0.square().sum(), weight)
    torch.testing.assert_close((g, gg), (g0, gg0))
    monkeypatch.setattr(network_module, "_ONEDNN_LINEAR", True)
    del calls[:]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert net(x).dtype == torch.bfloat16
    with torch.backends.mkldnn.flags(enabled=False):
        net(x)
    per_sample = vmap(
        grad(lambda p, row: functional_call(net, p, (row[None],)).sum()),
        in_dims=(None, 0),
    )({k: v.detach() for k, v in net.named_parameters()}, x)
    assert per_sample["layers.1.weight"].shape == (7, 5, 8)
    assert calls == []  # none of these went through oneDNN


@needs_onednn
@pytest.mark.parametrize("onednn", [False, True])
def test_classifier_trains_and_predicts_through_either_product(onednn, monkeypatch):
    # one network at a time, as on the CPU (a group's products are batched)
    monkeypatch.setattr(training_module, "_GROUPED_DEVICES", {"cuda"})
    monkeypatch.setattr(MACHClassifier, "_SHARED_DEVICES", {"cpu"})
    monkeypatch.setattr(network_module, "_ONEDNN_LINEAR", onednn)
    calls = _count_onednn_calls(monkeypatch)
    rng = np.random.RandomState(0)
    centers = rng.normal(size=(6, 30))
    y = rng.randint(6, size=300)
    X = (centers[y] + 0.3 * rng.normal(size=(300, 30))).astype(np.float32)
    clf = MACHClassifier(  # oneDNN: the CPU's, on any machine
        n_buckets=4, n_repetitions=3, max_epochs=15, random_state=0, device="cpu"
    ).fit(X, y)
    n_fit = len(calls)
    assert clf.score(X, y) > 0.9
    assert (n_fit > 0, len(calls) > n_fit) == (onednn, onednn)


def _table_gradient(net, batch, row_sum, monkeypatch):
    monkeypatch.setattr(MACHNetwork, "_ROW_SUM_DEVICES", {"cpu"} if row_sum else set())
    net.zero_grad(set_to_none=True)
    out = net(batch)
    (
        out * torch.arange(out.numel(), dtype=out.dtype).view(out.shape).cos()
    ).sum().backward()
    return out.detach(), net.input_weight.grad


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_hashed_features", [None, 30])
def test_table_gradient_summed_by_row_equals_embedding_bags(
    n_hashed_features, dtype, monkeypatch
):
    # 40 rows, many non-zeros sharing table rows (30 hashed rows: more so)
    X = sp.random(40, 200, density=0.1, format="csr", random_state=0, dtype=dtype)
    X.data *= np.random.RandomState(1).uniform(-2, 2, X.nnz)
    batch = csr_to_torch(X)
    net = MACHNetwork(
        200, 6, (16,), sparse_gradient=True, n_hashed_features=n_hashed_features
    )
    if dtype == np.float64:
        net = net.double()
    out_bags, grad_bags = _table_gradient(net, batch, False, monkeypatch)
    out_rows, grad_rows = _table_gradient(net, batch, True, monkeypatch)
    torch.testing.assert_close(out_rows, out_bags, rtol=0, atol=0)
    # embedding_bag's gradient has a row per non-zero; this one a row per
    # distinct table row, sorted
    assert grad_bags._nnz() == X.nnz
    rows = grad_rows._indices()[0]
    assert rows.numel() < X.nnz and bool((rows[1:] > rows[:-1]).all())
    expected = grad_bags.coalesce()
    torch.testing.assert_close(rows, expected.indices()[0], rtol=0, atol=0)
    torch.testing.assert_close(grad_rows._values(), expected.values())


def test_table_gradient_summed_by_row_of_an_empty_batch(monkeypatch):
    net = MACHNetwork(50, 4, (8,), sparse_gradient=True)
    for X in (
        sp.csr_matrix((3, 50), dtype=np.float32),
        sp.csr_matrix((0, 50), dtype=np.float32),
    ):
        out, grad = _table_gradient(net, csr_to_torch(X), True, monkeypatch)
        assert out.shape == (X.shape[0], 4) and grad._nnz() == 0


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(n_outputs=2.7), TypeError, "n_outputs must be an int, got 2.7"),
        (dict(n_outputs=0), ValueError, "n_outputs must be at least 1, got 0"),
        (dict(n_features=4.0), TypeError, "n_features must be an int"),
        (dict(n_features=-1), ValueError, "n_features must be at least 0"),
        (dict(n_features=True), TypeError, "n_features must be an int"),
        (dict(n_hashed_features=0), ValueError, "n_hashed_features must be at least 1"),
        (dict(n_hashed_features=2.5), TypeError, "n_hashed_features must be an int"),
        (dict(hidden_layer_sizes="12"), ValueError, "sequence of positive integers"),
        (dict(hidden_layer_sizes=(0,)), ValueError, "sequence of positive integers"),
        (dict(hidden_layer_sizes=(-5,)), ValueError, "sequence of positive integers"),
        (dict(hidden_layer_sizes=12), ValueError, "sequence of positive integers"),
        (dict(hidden_layer_sizes=(8.0,)), ValueError, "sequence of positive integers"),
        (dict(sparse_gradient="no"), TypeError, "sparse_gradient must be a bool"),
        (dict(feature_seed="3"), TypeError, "feature_seed must be an int"),
        (dict(feature_seed=2.7), TypeError, "feature_seed must be an int"),
        (dict(feature_seed=-1), ValueError, "feature_seed must be at least 0"),
        (dict(feature_seed=2**32), ValueError, "feature_seed must be below 2"),
    ],
)
def test_constructor_arguments_are_checked(kwargs, error, match):
    # MACHNetwork is public: fractional sizes were truncated, a string of
    # digits iterated, a width of 0 gave a constant network, and negative
    # or float sizes failed inside torch
    arguments = dict(n_features=4, n_outputs=3) | kwargs
    with pytest.raises(error, match=match):
        MACHNetwork(**arguments)


def test_constructor_takes_numpy_ints_and_any_sequence():
    net = MACHNetwork(
        np.int64(4),
        np.int32(3),
        hidden_layer_sizes=np.array([5, 6]),
        sparse_gradient=np.True_,
    )
    assert net.init_kwargs["hidden_layer_sizes"] == (5, 6)
    assert net.sparse_gradient is True and type(net.init_kwargs["n_features"]) is int
    assert MACHNetwork(4, 3, hidden_layer_sizes=range(2, 4)).init_kwargs[
        "hidden_layer_sizes"
    ] == (2, 3)
    assert MACHNetwork(4, 3, hidden_layer_sizes=())(torch.ones(2, 4)).shape == (2, 3)


@pytest.mark.parametrize("n_hashed_features", [None, 3])
@pytest.mark.parametrize("width", [4, 9])
def test_forward_refuses_a_batch_of_another_width(n_hashed_features, width):
    # a CSR batch of another width read the table rows of other features
    # (or failed inside torch, by which columns held non-zeros)
    net = MACHNetwork(5, 4, (6,), n_hashed_features=n_hashed_features)
    X = torch.zeros(2, width)
    X[0, 1], X[1, 3] = 1.0, 2.0
    for batch in (X.to_sparse_csr(), X):
        with pytest.raises(ValueError, match=f"X has {width} features, but this "):
            net(batch)


@pytest.mark.parametrize("n_hashed_features", [None, 10])
@pytest.mark.parametrize("n_rows", [2, 200])
def test_sparse_batches_of_any_layout_read_as_csr(n_hashed_features, n_rows):
    # a COO batch took the dense paths by chance: a hashed network then
    # failed inside torch (index_add_ has no sparse kernel) on small
    # batches only, and worked on large ones
    torch.manual_seed(0)
    net = MACHNetwork(100, 4, (8,), n_hashed_features=n_hashed_features)
    X = (torch.rand(n_rows, 100) < 0.05) * torch.rand(n_rows, 100)
    expected = net(X)
    rows, values = X.to_sparse().indices(), X.to_sparse().values()
    duplicated = torch.sparse_coo_tensor(  # uncoalesced, each entry halved
        torch.cat([rows, rows], 1), torch.cat([values, values]) / 2, X.shape
    )
    grouped = GroupedMACHNetwork([net, net])
    for batch in (X.to_sparse(), X.to_sparse_csc(), duplicated):
        torch.testing.assert_close(net(batch), expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(
            grouped(batch), expected.expand(2, -1, -1), rtol=1e-5, atol=1e-6
        )


def test_feature_map_is_built_on_the_default_device():
    # from_numpy ignored a `with torch.device(...)` block: the weights went
    # there and the feature map stayed on the CPU (a device mismatch at
    # the first dense forward)
    with torch.device("meta"):
        net = MACHNetwork(100, 8, hidden_layer_sizes=(16,), n_hashed_features=32)
    assert {t.device.type for t in net.state_dict().values()} == {"meta"}
    assert net(torch.randn(4, 100, device="meta")).shape == (4, 8)


def test_batches_built_for_another_device_give_no_csr_warning():
    # predictions on a GPU copied each CPU-built CSR batch there, a new CSR
    # tensor that torch warns of at every one under set_warn_always: built
    # on the device from its parts, through csr_tensor ("meta" stands in
    # for a device here)
    X = sp.random(60, 40, density=0.2, format="csr", random_state=0, dtype=np.float32)
    net = MACHNetwork(40, 8, (16,)).eval().to("meta")
    shipped = torch.is_warn_always_enabled()
    torch.set_warn_always(True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            (out,) = run_networks([net], X, "meta", "softmax", 16)
    finally:
        torch.set_warn_always(shipped)
    assert out.device.type == "meta" and out.shape == (60, 8)
