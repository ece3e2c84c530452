"""LazyAdam against torch's Adam (dense) and SparseAdam (sparse), step by step."""

import pytest
import torch
from torch.nn import functional as F

from sklearn_mach import LazyAdam


def _batches(n_steps, seed=0, high=40):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(n_steps):
        rows = torch.randint(0, high, (30,), generator=gen)  # repeats; rows 40+ never
        yield rows, torch.randn(30, 4, generator=gen)


def _step(table, optimizer, rows, target, sparse):
    optimizer.zero_grad()
    out = F.embedding(rows, table, sparse=sparse)
    ((out - target) ** 2).sum().backward()
    optimizer.step()


def test_dense_steps_equal_torch_adam():
    a = torch.nn.Parameter(
        torch.randn(50, 4, generator=torch.Generator().manual_seed(1))
    )
    b = torch.nn.Parameter(a.detach().clone())
    lazy = LazyAdam([a], lr=1e-2)
    adam = torch.optim.Adam([b], lr=1e-2)
    for rows, target in _batches(20):
        _step(a, lazy, rows, target, sparse=False)
        _step(b, adam, rows, target, sparse=False)
        # eps enters as in Kingma & Ba's "efficient" form: equal up to rounding
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "sync_free, n_rows",
    [(False, 50), (True, 50), (True, 12)],
    ids=["coalesce", "sync-free", "sync-free-more-entries-than-rows"],
)
def test_sparse_steps_equal_torch_sparse_adam(sync_free, n_rows, monkeypatch):
    # sync-free: the GPU's path, here on the CPU.  With 12 rows, a batch's
    # 30 entries outnumber the table: the slots past the distinct rows wrap
    # onto real and untouched rows, and must add exactly zero to them.
    monkeypatch.setattr(
        LazyAdam, "_SYNC_FREE_DEVICES", {"cpu", "cuda"} if sync_free else {"cuda"}
    )
    a = torch.nn.Parameter(
        torch.randn(n_rows, 4, generator=torch.Generator().manual_seed(1))
    )
    b = torch.nn.Parameter(a.detach().clone())
    lazy = LazyAdam([a], lr=1e-2)
    sparse_adam = torch.optim.SparseAdam([b], lr=1e-2)
    untouched = set(range(n_rows))
    start = a.detach().clone()
    for rows, target in _batches(20, high=min(40, n_rows - 2)):
        _step(a, lazy, rows, target, sparse=True)
        _step(b, sparse_adam, rows, target, sparse=True)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        untouched -= set(rows.tolist())
    assert untouched  # rows never in a batch never move
    for row in untouched:
        assert torch.equal(a[row], start[row])


def test_sync_free_padding_of_float16_tables_stays_zero(monkeypatch):
    # eps=1e-8 is 0 in float16: the padding slots computed 0 / 0 and added
    # NaN to rows without a gradient (only eps == 0 masked them)
    monkeypatch.setattr(LazyAdam, "_SYNC_FREE_DEVICES", {"cpu", "cuda"})
    monkeypatch.setattr(LazyAdam, "_FLUSH_DEVICES", set())  # as on a GPU
    table = torch.nn.Parameter(torch.ones(6, 2, dtype=torch.float16))
    optimizer = LazyAdam([table], lr=0.1)
    rows = torch.tensor([[4, 4]])  # 2 entries, 1 distinct row: 1 padding slot
    table.grad = torch.sparse_coo_tensor(
        rows, torch.ones(2, 2, dtype=torch.float16), (6, 2)
    )
    optimizer.step()
    untouched = [0, 1, 2, 3, 5]
    assert torch.equal(table.detach()[untouched], torch.ones(5, 2, dtype=torch.float16))
    assert torch.isfinite(table.detach()[4]).all()


@pytest.mark.parametrize("shape", [(10,), (6, 3, 2), (5, 3, 1, 2)])
@pytest.mark.parametrize("eps", [1e-8, 0.0])
def test_sync_free_steps_of_parameters_not_2d(shape, eps, monkeypatch):
    # the GPU's path masked its padding slots as (n, 1), right for 2-D
    # parameters only: a 1-D one failed to step, and where a gradient's
    # entry count equalled a 3-D one's second dimension, the mask zeroed
    # the wrong slices (wrong weights, NaN with eps=0)
    start = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    rows = torch.tensor([[0, 4, 4]])  # 3 entries, 2 distinct rows: 1 padding slot
    values = torch.randn((3, *shape[1:]), generator=torch.Generator().manual_seed(4))
    gradient = torch.sparse_coo_tensor(rows, values, shape)
    # the sync-free path, the coalescing one, and SparseAdam (eps > 0 only)
    runs = [(LazyAdam, {"cpu", "cuda"}), (LazyAdam, {"cuda"})]
    if eps:
        runs.append((torch.optim.SparseAdam, {"cuda"}))
    results = []
    for optimizer_class, sync_free in runs:
        monkeypatch.setattr(LazyAdam, "_SYNC_FREE_DEVICES", sync_free)
        p = torch.nn.Parameter(start.clone())
        optimizer = optimizer_class([p], lr=0.1, eps=eps)
        for _ in range(3):
            p.grad = gradient.clone()
            optimizer.step()
        results.append(p.detach())
    assert torch.isfinite(results[0]).all()
    for other in results[1:]:
        torch.testing.assert_close(results[0], other, rtol=1e-5, atol=1e-6)
    assert torch.equal(results[0][1:4], start[1:4])  # rows without a gradient


def test_sync_free_padding_stays_zero_without_eps(monkeypatch):
    # With eps=0 the padding slots (past the distinct rows) compute 0 / 0;
    # their update must still be exactly zero, as the coalescing path gives.
    start = torch.randn(12, 4, generator=torch.Generator().manual_seed(2))
    results = []
    for sync_free in ({"cpu", "cuda"}, {"cuda"}):
        monkeypatch.setattr(LazyAdam, "_SYNC_FREE_DEVICES", sync_free)
        a = torch.nn.Parameter(start.clone())
        optimizer = LazyAdam([a], lr=1e-2, eps=0.0)
        for rows, target in _batches(10, high=10):
            _step(a, optimizer, rows, target, sparse=True)
        results.append(a.detach())
    assert torch.isfinite(results[0]).all()
    torch.testing.assert_close(results[0], results[1], rtol=1e-5, atol=1e-6)
    assert torch.equal(results[0][10:], start[10:])  # never in a batch


@pytest.mark.parametrize("sync_free", [False, True], ids=["coalesce", "sync-free"])
def test_an_empty_sparse_gradient_counts_a_step_and_moves_nothing(
    sync_free, monkeypatch
):
    # a batch of rows without any feature: the input table's gradient has no
    # entries (the sync-free path returns before its sort and scatter)
    monkeypatch.setattr(
        LazyAdam, "_SYNC_FREE_DEVICES", {"cpu", "cuda"} if sync_free else {"cuda"}
    )
    start = torch.randn(12, 4, generator=torch.Generator().manual_seed(3))
    a = torch.nn.Parameter(start.clone())
    b = torch.nn.Parameter(start.clone())
    lazy, sparse_adam = LazyAdam([a], lr=1e-2), torch.optim.SparseAdam([b], lr=1e-2)
    batches = list(_batches(6, high=10))
    for i, (rows, target) in enumerate(batches):
        for p, optimizer in ((a, lazy), (b, sparse_adam)):
            if i == 2:  # an empty gradient between full ones
                optimizer.zero_grad()
                p.grad = torch.sparse_coo_tensor(
                    torch.empty(1, 0, dtype=torch.int64),
                    torch.empty(0, 4),
                    (12, 4),
                    check_invariants=True,
                )
                before = p.detach().clone()
                optimizer.step()
                assert torch.equal(p.detach(), before)
            else:
                _step(p, optimizer, rows, target, sparse=True)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert lazy.state[a]["step"] == len(batches)


def test_sparse_and_dense_parameters_in_one_optimizer():
    table = torch.nn.Parameter(torch.randn(50, 4))
    bias = torch.nn.Parameter(torch.zeros(4))
    optimizer = LazyAdam([table, bias], lr=1e-2)
    for rows, target in _batches(3):
        optimizer.zero_grad()
        ((F.embedding(rows, table, sparse=True) + bias - target) ** 2).sum().backward()
        optimizer.step()
    state = optimizer.state_dict()["state"]
    assert state[0]["step"] == state[1]["step"] == 3
    for kwargs, match in [
        (dict(lr=0), "lr > 0"),
        (dict(lr=float("nan")), "lr > 0"),
        (dict(eps=-1.0), "eps >= 0"),
        (dict(betas=(1.5, 0.9)), "betas in"),
        (dict(betas=(0.9, 1.0)), "betas in"),
    ]:
        with pytest.raises(ValueError, match=match):
            LazyAdam([bias], **kwargs)


def test_eps_enters_as_in_the_efficient_form():
    # The docstring's formula, at a gradient of the order of eps, where it
    # and torch.optim.Adam (eps added to the bias-corrected sqrt(v)) differ
    g, lr, (b1, b2), eps = 1e-9, 1.0, (0.9, 0.999), 1e-8
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    p.grad = torch.full_like(p, g)
    LazyAdam([p], lr=lr, eps=eps).step()
    m, v = (1 - b1) * g, (1 - b2) * g**2
    expected = -lr * (1 - b2) ** 0.5 / (1 - b1) * m / (v**0.5 + eps)
    torch_adam = -lr * (m / (1 - b1)) / ((v / (1 - b2)) ** 0.5 + eps)
    assert p.item() == pytest.approx(expected, rel=1e-12)
    assert abs(expected - torch_adam) > 0.5 * abs(torch_adam)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("eps", [1e-8, 1e-6, 1e-12, 1e-30])
def test_denominator_floor_changes_no_bit(dtype, eps):
    # The floor under the second moment (which keeps sqrt off the CPU's slow
    # path for zeros) must leave sqrt(v) + eps bitwise unchanged.
    from sklearn_mach._optim import _denominator, _sqrt_floor

    info = torch.finfo(dtype)
    gen = torch.Generator().manual_seed(0)
    v = torch.cat(
        [
            torch.zeros(10, dtype=dtype),
            torch.tensor([info.tiny, info.tiny / 2**10, info.smallest_normal * 3]).to(
                dtype
            ),
            torch.logspace(-45, 2, 2000, dtype=torch.float64).to(dtype),
            torch.rand(1000, generator=gen, dtype=dtype),
        ]
    )
    expected = v.sqrt() + eps
    assert torch.equal(_denominator(v.clone(), eps), expected)
    out = torch.empty_like(v)
    assert torch.equal(_denominator(v, eps, out=out), expected)
    assert torch.equal(_denominator(v.clone(), eps, floor=False), expected)
    assert torch.equal(_denominator(v, eps, out=out, floor=False), expected)
    if eps >= 1e-8:
        assert _sqrt_floor(eps, dtype) > 0  # the floor is on for usual eps


def _subnormal(t):
    return int(((t != 0) & (t.abs() < torch.finfo(t.dtype).tiny)).sum())


def _train_toward_subnormal_moments(path):
    # Column 0's gradient vanishes after one step of 1e-30: its first moment
    # decays by beta1 per step into the subnormal range (from step ~160).
    # Column 1's gradient is 1e-19: its second moment is about 1e-41.
    gen = torch.Generator().manual_seed(0)
    a = torch.nn.Parameter(torch.randn(6, 3, generator=gen))
    optimizer = LazyAdam([a], lr=1e-2)
    rows = torch.tensor([0, 2, 3, 2])  # a repeated row; rows 1, 4, 5 untouched
    subnormal = 0
    for step in range(400):
        values = torch.randn(4, 3, generator=gen)
        values[:, 0] = 1e-30 if step == 0 else 0.0
        values[:, 1] = 1e-19
        grad = torch.sparse_coo_tensor(
            rows[None], values, a.shape, check_invariants=True
        )
        a.grad = grad.to_dense() if path == "dense" else grad
        optimizer.step()
        state = optimizer.state[a]
        subnormal += _subnormal(state["exp_avg"]) + _subnormal(state["exp_avg_sq"])
    return a.detach(), subnormal


@pytest.mark.parametrize(
    "path", ["dense", "coalesce", "sync-free"], ids=lambda p: f"path={p}"
)
def test_moments_never_subnormal_and_weights_unchanged(path, monkeypatch):
    # On a CPU, arithmetic on subnormal numbers is ~40x slower: LazyAdam
    # stores zeros instead, and the weights stay bitwise the same.
    monkeypatch.setattr(LazyAdam, "_FLUSH_DEVICES", {"cpu"})
    sync_free = {"cpu", "cuda"} if path == "sync-free" else {"cuda"}
    monkeypatch.setattr(LazyAdam, "_SYNC_FREE_DEVICES", sync_free)
    weights, subnormal = _train_toward_subnormal_moments(path)
    assert subnormal == 0
    # as on a GPU, where subnormals cost nothing
    monkeypatch.setattr(LazyAdam, "_FLUSH_DEVICES", set())
    unflushed, subnormal = _train_toward_subnormal_moments(path)
    assert subnormal > 0  # the test does reach the subnormal range
    assert torch.equal(weights, unflushed)


def _tiny_gradient_steps(path, eps):
    # gradients of 1e-20: normal first moments, second moments ~1e-43
    a = torch.nn.Parameter(torch.zeros(4, 3))
    optimizer = LazyAdam([a], lr=1e-2, eps=eps)
    rows = torch.tensor([0, 2])
    for _ in range(3):
        grad = torch.sparse_coo_tensor(
            rows[None], torch.full((2, 3), 1e-20), a.shape, check_invariants=True
        )
        a.grad = grad.to_dense() if path == "dense" else grad
        optimizer.step()
    return a.detach()


@pytest.mark.parametrize("eps", [1e-25, 0.0])
@pytest.mark.parametrize(
    "path", ["dense", "coalesce", "sync-free"], ids=lambda p: f"path={p}"
)
def test_tiny_eps_keeps_subnormal_moments(path, eps, monkeypatch):
    # Zeroing a subnormal second moment changes sqrt(v) + eps unless eps
    # is large enough: with eps=1e-25 the steps were 4,000 times too long,
    # with eps=0 a normal first moment over a zeroed second one gave -inf.
    sync_free = {"cpu", "cuda"} if path == "sync-free" else {"cuda"}
    monkeypatch.setattr(LazyAdam, "_SYNC_FREE_DEVICES", sync_free)
    monkeypatch.setattr(LazyAdam, "_FLUSH_DEVICES", {"cpu"})
    weights = _tiny_gradient_steps(path, eps)
    monkeypatch.setattr(LazyAdam, "_FLUSH_DEVICES", set())
    unflushed = _tiny_gradient_steps(path, eps)
    touched = weights[[0, 2]]
    assert torch.isfinite(touched).all() and (touched.abs() < 0.1).all()
    assert torch.equal(weights[[0, 2]], unflushed[[0, 2]])


@pytest.mark.parametrize(
    "rows",
    [[0, 2, 5, 7], [0, 2, 2, 7], [5, 0, 7, 2], [7, 7, 0, 0], [3]],
    ids=["sorted-distinct", "sorted-repeats", "unsorted", "unsorted-repeats", "one"],
)
def test_sparse_update_of_any_row_order_equals_the_dense_gradients(rows):
    # a sparse gradient without its "coalesced" flag: coalesced only when
    # needed (rows sorted and distinct are used as they are)
    values = torch.arange(len(rows) * 3, dtype=torch.float32).view(-1, 3).sin()
    grad = torch.sparse_coo_tensor(
        torch.tensor([rows]), values, (8, 3), check_invariants=True
    )
    assert grad.is_coalesced() == (len(rows) == 1)  # torch flags one entry
    sparse_p = torch.nn.Parameter(torch.ones(8, 3))
    dense_p = torch.nn.Parameter(torch.ones(8, 3))
    sparse_opt, dense_opt = LazyAdam([sparse_p], lr=0.1), LazyAdam([dense_p], lr=0.1)
    touched = sorted(set(rows))
    for _ in range(3):
        sparse_p.grad = grad.clone()
        sparse_opt.step()
        dense_p.grad = grad.to_dense()
        dense_opt.step()
    # the touched rows move as with the dense gradient; the others do not
    torch.testing.assert_close(sparse_p[touched], dense_p[touched])
    untouched = [i for i in range(8) if i not in touched]
    assert torch.equal(sparse_p[untouched].detach(), torch.ones(len(untouched), 3))


def test_sparse_gradient_of_elements_is_refused_before_any_update():
    # sparse in both dimensions (dense.to_sparse()): updating rows with it
    # was silently wrong
    first, second = (
        torch.nn.Parameter(torch.ones(3)),
        torch.nn.Parameter(torch.ones(4, 3)),
    )
    first.grad = torch.ones(3)
    second.grad = torch.eye(4, 3).to_sparse()
    opt = LazyAdam([first, second], lr=0.1)
    with pytest.raises(ValueError, match="one sparse dimension .* got 2"):
        opt.step()
    assert torch.equal(first.detach(), torch.ones(3)) and not opt.state


@pytest.mark.parametrize("cast", ["double", "float"])
@pytest.mark.parametrize("reset", ["load_state_dict", "clear", "keep"])
def test_steps_after_the_model_changes_dtype(cast, reset):
    # the reused denominator buffer kept the old dtype: "Found dtype Float
    # but expected Double" where torch.optim.Adam steps on; with the state
    # kept, the moments are cast as load_state_dict casts them (Adam fails
    # there: its reference is Adam with the state reloaded)
    start = torch.float32 if cast == "double" else torch.float64
    results = []
    for cls in (LazyAdam, torch.optim.Adam):
        layer = torch.nn.Linear(4, 3).to(start)
        torch.nn.init.constant_(layer.weight, 0.5)
        opt = cls(layer.parameters(), lr=1e-2)
        x = torch.linspace(-1, 1, 32).reshape(8, 4)
        layer(x.to(start)).square().sum().backward()
        opt.step()
        opt.zero_grad()
        getattr(layer, cast)()
        if reset == "clear":
            opt.state.clear()
        elif reset == "load_state_dict" or cls is torch.optim.Adam:
            opt.load_state_dict(opt.state_dict())  # moments cast as the params
        layer(x.to(layer.weight.dtype)).square().sum().backward()
        opt.step()
        results.append(layer.weight.detach())
    assert results[0].dtype == results[1].dtype == getattr(torch, cast)
    torch.testing.assert_close(results[0], results[1], rtol=1e-5, atol=1e-6)


def test_complex_parameters_are_refused_before_any_update():
    # real-only operators failed inside torch ("hardshrink_cpu" not
    # implemented for 'ComplexFloat'), after the real parameters stepped
    real = torch.nn.Parameter(torch.ones(3))
    complex_ = torch.nn.Parameter(torch.ones(2, dtype=torch.complex64))
    real.grad, complex_.grad = torch.ones(3), torch.ones(2, dtype=torch.complex64)
    opt = LazyAdam([real, complex_], lr=0.1)
    with pytest.raises(TypeError, match="real parameters only, got one of torch.com"):
        opt.step()
    assert torch.equal(real.detach(), torch.ones(3)) and not opt.state


def test_sparse_steps_after_the_model_changes_dtype_with_the_state_kept():
    # the float32 moments met float64 rows in index_add_ (sparse updates):
    # kept, they are cast as load_state_dict casts them, same result
    results = []
    for reload in (False, True):
        table = torch.nn.Parameter(torch.linspace(-1, 1, 40).reshape(10, 4))
        opt = LazyAdam([table], lr=1e-2)
        for step, (rows, target) in enumerate(_batches(2, high=10)):
            if step == 1:
                table.data = table.data.double()
                if reload:
                    opt.load_state_dict(opt.state_dict())
            _step(table, opt, rows, target.to(table.dtype), sparse=True)
        results.append(table.detach())
    assert results[0].dtype == torch.float64
    torch.testing.assert_close(results[0], results[1], rtol=0, atol=0)
