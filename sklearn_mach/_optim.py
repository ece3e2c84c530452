"""Optimizers suited to networks whose input table gets sparse gradients."""

import torch
from torch.nn import functional as F

from ._device import accelerator_path, cpu_path


def _flush_subnormal(m, v):
    """Set the subnormal entries of ``m`` and ``v`` to zero, in place.

    The first moment of a unit whose gradient is zero (a dead ReLU unit)
    decays by ``beta1`` at each step, through the subnormal range (below
    ``finfo.tiny``) before it reaches zero; so does a second moment fed
    gradients under about ``1e-19``.  On x86 CPUs every arithmetic
    operation with a subnormal operand or result takes a slow path, 20 to
    50 times the normal cost (benchmarks/results/subnormal.md): after one
    pypi-maskedword epoch at B=512, 5% of the moments were subnormal (16%
    with a dense input table), and a step took 1.13-1.27 times as long.
    Stored moments are kept out of that range, on the CPU only (GPUs
    compute on subnormal numbers at full speed).  A weight cannot tell: an update from a
    subnormal ``m`` is below ``finfo.tiny / eps * lr`` (``1.2e-32`` at
    ``lr=1e-2``), under half a unit in the last place of any float32 weight
    above ``1e-24`` in magnitude.  A zeroed second moment changes
    ``sqrt(v) + eps`` only where ``eps`` is tiny: callers flush only where
    :func:`_flush_pays` says it changes nothing.
    """
    tiny = torch.finfo(m.dtype).tiny
    torch.hardshrink(m, tiny, out=m)  # in place: no fresh multi-MB tensor
    F.threshold_(v, tiny, 0.0)


def _flush_pays(eps, dtype):
    """Whether :func:`_flush_subnormal` leaves the update as it is at this ``eps``.

    ``sqrt(v)`` of a subnormal ``v`` is below ``sqrt(tiny)``, under half a
    unit in the last place of ``eps`` from ``eps >= 8 * sqrt(tiny) /
    machine_eps`` (7.3e-12 in float32): ``sqrt(v) + eps`` rounds to ``eps``
    with or without it.  A smaller ``eps`` (0 included, where a zeroed
    ``v`` under a normal ``m`` gave an infinite step) keeps the moments.
    """
    info = torch.finfo(dtype)
    return (eps * info.eps / 8) ** 2 >= info.tiny


def _sqrt_floor(eps, dtype):
    """A floor for the second moment that leaves ``sqrt(v) + eps`` unchanged.

    Below ``c = (eps * machine_eps / 8) ** 2``, ``sqrt(v)`` is under half a
    unit in the last place of ``eps``, so ``sqrt(v) + eps`` rounds to
    ``eps`` whether ``v`` is raised to ``c`` or not: the update is bitwise
    the same.  It matters for speed: on x86 CPUs ``sqrt`` of zero or of a
    number near the denormal range takes a slow path, about 20 times the
    normal cost, and the moments of dead ReLU units are exactly zero.
    ``0`` (no floor) when ``c`` itself would be that small.
    """
    info = torch.finfo(dtype)
    floor = (eps * info.eps / 8) ** 2
    return floor if floor >= info.tiny * 2**16 else 0.0


def _denominator(v, eps, out=None, floor=True):
    """``sqrt(v) + eps`` (into ``out``, else in place), without sqrt's slow path.

    ``floor=False`` skips the floor (:func:`_sqrt_floor`), which changes no
    bit of the result: for devices without that slow path, one pass less.
    """
    out = v if out is None else out
    if floor:
        v = torch.clamp_min(v, _sqrt_floor(eps, v.dtype), out=out)
    return torch.sqrt(v, out=out).add_(eps)


class LazyAdam(torch.optim.Optimizer):
    """Adam that also accepts sparse gradients, updating only the rows they touch.

    Dense gradients get the Adam update (Kingma & Ba, 2015) in the form
    :class:`torch.optim.SparseAdam` uses, the paper's "efficient" one: a
    step of ``lr * sqrt(1 - beta2**t) / (1 - beta1**t)`` along
    ``m / (sqrt(v) + eps)``, with the moments not bias-corrected.  It is
    :class:`torch.optim.Adam`'s update with ``eps`` scaled by
    ``1 / sqrt(1 - beta2**t)`` (31.6 at the first step, 1 in the limit):
    the same where gradients are much larger than ``eps``, a shorter step
    where they are not.  A sparse
    gradient (from :func:`torch.nn.functional.embedding_bag` with
    ``sparse=True``) updates the moments and the weights of the rows it
    holds only, as :class:`torch.optim.SparseAdam` does.  This keeps a step
    over a 10^5-row input table proportional to the features present in the
    batch instead of to the table size.

    Parameters
    ----------
    params : iterable
        Parameters or parameter groups to optimise.
    lr : float, default=1e-3
        Learning rate.
    betas : tuple of float, default=(0.9, 0.999)
        Decay rates of the first and second moment estimates.
    eps : float, default=1e-8
        Term added to ``sqrt(v)``, the square root of the second moment
        (not bias-corrected), in the denominator.

    Notes
    -----
    On the CPU, moments below ``torch.finfo(dtype).tiny`` (subnormal
    numbers, which x86 CPUs compute on 20 to 50 times slower) are stored as
    zero, where ``eps`` is at least ``8 * sqrt(tiny) / finfo(dtype).eps``
    (7.3e-12 in float32; the default 1e-8 is).  The weights are the same:
    the update such a moment would make is below ``tiny / eps * lr``
    (``1.2e-32`` at ``eps=1e-8``, ``lr=1e-2``), under half a unit in the
    last place of any float32 weight above ``1e-24``, and ``sqrt(v) + eps``
    rounds to the same number.  A smaller ``eps`` keeps them.
    """

    #: Devices whose sparse updates avoid every host synchronisation (see
    #: ``_sparse_update_sync_free``); the CPU too under
    #: SKLEARN_MACH_TEST_GROUPED=1 (``_device.ACCELERATOR_PATHS_ON_CPU``).
    _SYNC_FREE_DEVICES = accelerator_path({"cuda"})
    #: Devices on which subnormal moments are stored as zeros (see
    #: ``_flush_subnormal``): GPUs compute on subnormals at full speed.
    #: Empty under SKLEARN_MACH_TEST_GROUPED=1.
    _FLUSH_DEVICES = cpu_path({"cpu"})

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        if not 0 < lr < float("inf"):
            raise ValueError(f"LazyAdam needs a finite lr > 0, got {lr}.")
        if not 0 <= eps < float("inf"):
            raise ValueError(f"LazyAdam needs a finite eps >= 0, got {eps}.")
        if len(betas) != 2 or not all(0 <= beta < 1 for beta in betas):
            raise ValueError(f"LazyAdam needs betas in [0, 1), got {betas}.")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps))

    @torch.no_grad()
    def step(self, closure=None):
        """Perform one optimization step.

        Parameters
        ----------
        closure : callable, default=None
            Re-evaluates the model and returns the loss.

        Returns
        -------
        loss : torch.Tensor or None
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:  # before any update
            for p in group["params"]:
                if p.grad is not None and p.is_complex():
                    raise TypeError(
                        f"LazyAdam updates real parameters only, got one of {p.dtype} "
                        "(torch.optim.Adam takes complex ones)."
                    )
                if p.grad is not None and p.grad.is_sparse and p.grad.sparse_dim() != 1:
                    raise ValueError(
                        "LazyAdam updates whole rows: a sparse gradient must "
                        "have one sparse dimension (the rows), as "
                        f"embedding_bag's has; got {p.grad.sparse_dim()}."
                    )
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            dense = {}  # step -> [(param, grad, state)]: one foreach update each
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                elif state["exp_avg"].dtype != p.dtype:  # model cast, state kept
                    # as load_state_dict casts them
                    state["exp_avg"] = state["exp_avg"].to(p.dtype)
                    state["exp_avg_sq"] = state["exp_avg_sq"].to(p.dtype)
                state["step"] += 1
                if p.grad.is_sparse and p.device.type in self._SYNC_FREE_DEVICES:
                    self._sparse_update_sync_free(p, p.grad, state, group)
                elif p.grad.is_sparse:
                    self._sparse_update(p, p.grad, state, group)
                else:
                    dense.setdefault(state["step"], []).append((p, p.grad, state))
            for step, items in dense.items():
                params, grads, states = zip(*items)
                exp_avgs = [s["exp_avg"] for s in states]
                exp_avg_sqs = [s["exp_avg_sq"] for s in states]
                torch._foreach_mul_(exp_avgs, beta1)
                torch._foreach_add_(exp_avgs, grads, alpha=1 - beta1)
                torch._foreach_mul_(exp_avg_sqs, beta2)
                torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
                for p, m, v in zip(params, exp_avgs, exp_avg_sqs):
                    if self._flushes(p, group):
                        _flush_subnormal(m, v)
                # sqrt into reused buffers: a fresh multi-MB tensor per step
                # costs more in page faults than the arithmetic
                denom = [self._buffer(p) for p in params]
                for v, d in zip(exp_avg_sqs, denom):
                    _denominator(v, group["eps"], out=d)
                torch._foreach_addcdiv_(
                    list(params), exp_avgs, denom, value=-self._step_size(group, step)
                )
        return loss

    def _flushes(self, p, group):
        return p.device.type in self._FLUSH_DEVICES and _flush_pays(
            group["eps"], p.dtype
        )

    def _buffer(self, p):
        buffers = self.__dict__.setdefault("_buffers", {})
        buffer = buffers.get(id(p))
        if (
            buffer is None
            or buffer.shape != p.shape
            or buffer.device != p.device
            or buffer.dtype != p.dtype  # a model cast after earlier steps
        ):
            buffer = buffers[id(p)] = torch.empty_like(p)
        return buffer

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_buffers", None)
        return state

    @staticmethod
    def _step_size(group, step):
        beta1, beta2 = group["betas"]
        return group["lr"] * (1 - beta2**step) ** 0.5 / (1 - beta1**step)

    def _sparse_update(self, p, grad, state, group):
        """Adam on the rows a sparse gradient holds; other rows are left as they are."""
        beta1, beta2 = group["betas"]
        rows = grad._indices()[0]
        # Rows already sorted and distinct (MACHNetwork's gradient on the
        # CPU, which autograd stores without its "coalesced" flag) need no
        # coalescing, a sort of all the entries; checking is one pass.
        if rows.numel() > 1 and not bool((rows[1:] > rows[:-1]).all()):
            grad = grad.coalesce()
            rows = grad._indices()[0]
        values = grad._values()
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        m = exp_avg.index_select(0, rows).mul_(beta1).add_(values, alpha=1 - beta1)
        v = (
            exp_avg_sq.index_select(0, rows)
            .mul_(beta2)
            .addcmul_(values, values, value=1 - beta2)
        )
        if self._flushes(p, group):
            _flush_subnormal(m, v)
        exp_avg.index_copy_(0, rows, m)
        exp_avg_sq.index_copy_(0, rows, v)
        p.index_add_(
            0,
            rows,
            m.div_(_denominator(v, group["eps"])),
            alpha=-self._step_size(group, state["step"]),
        )

    def _sparse_update_sync_free(self, p, grad, state, group):
        """The same update with sizes known in advance: no host synchronisation.

        ``coalesce`` must read the number of distinct rows back from the
        device, which stalls a GPU once per step.  Here the gradient's
        entries are sorted by row and summed into one slot per entry; slots
        past the number of distinct rows read zero moments and gradients,
        so their moments, differences and update are exactly zero, and they
        add that zero to rows of their own (slot ``i`` to row ``i mod
        n_rows``: one shared row would serialise their atomic adds).
        Moments and weights are updated by adding differences, so the
        result equals :meth:`_sparse_update` up to rounding.  On a GPU the
        time goes to passes over the ``n x width`` entries: 19 here (25
        before the differences were scaled by ``index_add_``'s ``alpha``
        and the padding masked at the start instead of the end; writing
        the moments with ``index_copy_`` instead was slower still).
        """
        rows, values = grad._indices()[0], grad._values()
        n = rows.shape[0]
        if n == 0:
            return
        beta1, beta2 = group["betas"]
        rows, order = torch.sort(rows)
        first = torch.ones_like(rows, dtype=torch.bool)
        torch.ne(rows[1:], rows[:-1], out=first[1:])
        slot = torch.cumsum(first, 0).sub_(1)
        # sorted entries: each slot's adds are adjacent
        g = torch.zeros_like(values).index_add_(0, slot, values[order])
        positions = torch.arange(n, device=rows.device)
        slot_rows = (positions % p.shape[0]).scatter_(0, slot, rows)
        # one flag per slot, over the rest of its dimensions (any number)
        padding = (positions > slot[-1]).view(-1, *[1] * (values.dim() - 1))
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        m_old = exp_avg.index_select(0, slot_rows).masked_fill_(padding, 0)
        v_old = exp_avg_sq.index_select(0, slot_rows).masked_fill_(padding, 0)
        dm = torch.sub(g, m_old)  # m = m_old + (1 - beta1) * dm
        dv = g.mul_(g).sub_(v_old)  # v = v_old + (1 - beta2) * dv
        exp_avg.index_add_(0, slot_rows, dm, alpha=1 - beta1)
        exp_avg_sq.index_add_(0, slot_rows, dv, alpha=1 - beta2)
        m = m_old.add_(dm, alpha=1 - beta1)
        v = v_old.add_(dv, alpha=1 - beta2)
        cpu = p.device.type in self._FLUSH_DEVICES
        if self._flushes(p, group):
            # the CPU, which takes this path in tests only (it coalesces):
            # the whole tables, as the rows' differences were added already
            _flush_subnormal(m, v)
            _flush_subnormal(exp_avg, exp_avg_sq)
        # padding computes 0 / 0 where eps is 0 in the parameter's dtype
        # (1e-8 rounds to 0 in float16)
        update = m.div_(_denominator(v, group["eps"], floor=cpu))
        update.masked_fill_(padding, 0)
        p.index_add_(0, slot_rows, update, alpha=-self._step_size(group, state["step"]))
