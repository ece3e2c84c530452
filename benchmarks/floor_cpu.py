"""How fast can a CPU training step be?  The library's step against a hand-written one.

    python benchmarks/floor_cpu.py --rounds 3 > benchmarks/results/floor_cpu.md
    python benchmarks/floor_cpu.py --dataset synthetic-100 --rows 3000 --rounds 1

The CPU-epoch target of issue 8 asks for half of 0.1's time per network
step at the target's settings (B=512, batch 256, 4,096 hashed input rows,
one hidden layer of 256, lr 0.01).  This script bounds what removing
overhead can give.  On the same batches of ``--rows`` random rows of
pypi-maskedword (one network, the batches that ``fit`` cuts for it), it
times, in ABBA order over ``--rounds`` rounds:

- ``fit``: one epoch of the library's trainer (``Trainer.run``: data
  preparation, skorch's loop, autograd, :class:`~sklearn_mach.LazyAdam`);
- ``library step``: the library's training step, ``MACHNet._train_step``
  (module, criterion, optimizer, autograd), over the batches already cut;
- ``hand-written step``: the same arithmetic written out, without
  autograd, skorch or an optimizer object: forward, the three matrix
  products of the backward, the input table's gradient as a bag sum over
  the distinct rows (``_network._sum_by_row``, as the library's CPU
  backward computes it; no coalesce), Adam (with LazyAdam's subnormal flush
  and sqrt floor) on the touched rows;
- ``matrix products only``: the forward's and backward's three products of
  the output layer, the part no rewrite removes (fp32).

The hand-written step and the products alone compute the products as the
library does on this CPU: through oneDNN where
``sklearn_mach._network._ONEDNN_LINEAR`` (AMD CPUs), else torch's BLAS.

It checks that the library step trains on fit's batches (the weights after
the epoch are equal) and that the hand-written step computes the library's
update: after ``--check-steps`` steps the weights agree within ``--rtol``
(the order of summation differs).  Over a whole epoch the two drift apart
(Adam turns a rounding residue of a zero gradient into a full step), so
for the epoch it prints both trainings' mean loss.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))


def prepare(X, y, n_classes, settings, seed=0):
    """One network's module, its training data and the batches fit cuts for it."""
    from sklearn_mach import CountMinLabelHasher
    from sklearn_mach._training import (
        BatchIterator,
        TrainingData,
        build_module,
        sparse_gradient_pays,
    )

    hasher = CountMinLabelHasher(
        n_buckets=settings["n_buckets"], n_repetitions=1, random_state=seed
    ).fit(np.zeros((1, n_classes)))
    targets = hasher.hash(y).astype(np.int64)  # (1, n)
    weights = np.ones(X.shape[0])
    sparse = sparse_gradient_pays(
        X, settings["batch_size"], settings["n_hashed_features"]
    )
    module = build_module(
        None,
        X.shape[1],
        settings["n_buckets"],
        (256,),
        sparse,
        seed=seed,
        n_hashed_features=settings["n_hashed_features"],
    )
    data = TrainingData(X, targets, weights, "cpu", sparse_input=True)
    iterator = BatchIterator(data, settings["batch_size"], shuffle=True, seed=seed)
    batches = [(Xb, yb[0], wb[0]) for Xb, yb, wb in iterator]
    return module, (X, targets, weights), batches


def _trainer(module, settings):
    """The library's trainer of one network (a copy of ``module``)."""
    from sklearn_mach._training import Trainer

    return Trainer(
        [0],
        [module],
        grouped=False,
        multilabel=False,
        optimizer="adam",
        lr=settings["lr"],
        batch_size=settings["batch_size"],
        device="cpu",
    )


def fit_epoch(module, arrays, settings, seed=0):
    """ms per step of the library's trainer over one epoch, and its module."""
    trainer = _trainer(module, settings)
    start = time.perf_counter()
    trainer.run(*arrays, 1, seeds=[seed])
    seconds = time.perf_counter() - start
    steps = -(-arrays[0].shape[0] // settings["batch_size"])
    return 1e3 * seconds / steps, trainer.net.module_


def library_steps(module, batches, settings):
    """The library's step per batch, without skorch's epoch loop.

    ``MACHNet._train_step``: the module, ``BucketLoss``, ``LazyAdam`` and
    autograd, on a fresh trainer's copy of ``module``.
    """
    net = _trainer(module, settings).net
    losses = []
    start = time.perf_counter()
    for X, y, w in batches:
        losses.append(net._train_step(X, y, w).detach())
    ms = 1e3 * (time.perf_counter() - start) / len(batches)
    return ms, net.module_, float(torch.cat(losses).mean())


def products():
    """The output layer's three products (``common.linear_products``),
    computed as the library's linear layers compute them here."""
    import common

    from sklearn_mach import _network

    return common.linear_products(_network._ONEDNN_LINEAR)


def table_forward(X, rows_of, table):
    """The input table's bag sums for a CSR batch: the table rows of its
    non-zeros, its row pointers and values, and the hidden pre-activations."""
    crow, values = X.crow_indices(), X.values()
    rows = rows_of.index_select(0, X.col_indices()).long()  # as MACHNetwork
    hidden = F.embedding_bag(
        rows,
        table,
        crow,
        mode="sum",
        per_sample_weights=values,
        include_last_offset=True,
    )
    return rows, crow, values, hidden


def hand_written_steps(module, batches, lr, betas=(0.9, 0.999), eps=1e-8):
    """The same training, written out: no autograd, no optimizer object.

    Handles the default network only: one hidden ReLU layer, CSR batches,
    a hashed input table with sparse (row-wise) Adam updates.
    """
    from sklearn_mach._network import _sum_by_row
    from sklearn_mach._optim import LazyAdam, _denominator, _flush_subnormal

    with torch.no_grad():
        table = module.input_weight.detach().clone()
        rows_of = module.feature_rows
        bias = module.input_bias.detach().clone()
        linear = module.layers[1]
        weight = linear.weight.detach().clone()  # (B, hidden)
        out_bias = linear.bias.detach().clone()
        forward, grad_weight, grad_input = products()
        dense = [bias, weight, out_bias]
        m_dense = [torch.zeros_like(p) for p in dense]
        v_dense = [torch.zeros_like(p) for p in dense]
        denom = [torch.empty_like(p) for p in dense]
        m_table, v_table = torch.zeros_like(table), torch.zeros_like(table)
        beta1, beta2 = betas
        positions = torch.arange(batches[0][0].shape[0])
        losses = []
        start = time.perf_counter()
        for step, (X, y, w) in enumerate(batches, 1):
            n = X.shape[0]
            # forward
            rows, crow, values, hidden = table_forward(X, rows_of, table)
            active = hidden.add_(bias).clamp_min_(0)
            grad_logits = torch.softmax(forward(active, weight, out_bias), 1)
            # backward of the weighted mean cross-entropy
            share = w / w.sum()
            losses.append(-(grad_logits[positions[:n], y].log() * share).sum())
            grad_logits[positions[:n], y] -= 1
            grad_logits.mul_(share[:, None])
            grads = [None, grad_weight(grad_logits, active), grad_logits.sum(0)]
            grad_hidden = grad_input(grad_logits, weight).mul_(active > 0)
            grads[0] = grad_hidden.sum(0)
            # the table's gradient: one bag sum per distinct row
            distinct, grad_rows = _sum_by_row(grad_hidden, rows, crow, values)
            # Adam, as LazyAdam computes it
            step_size = LazyAdam._step_size(dict(lr=lr, betas=betas), step)
            torch._foreach_mul_(m_dense, beta1)
            torch._foreach_add_(m_dense, grads, alpha=1 - beta1)
            torch._foreach_mul_(v_dense, beta2)
            torch._foreach_addcmul_(v_dense, grads, grads, value=1 - beta2)
            for m, v, d in zip(m_dense, v_dense, denom):
                _flush_subnormal(m, v)
                _denominator(v, eps, out=d)
            torch._foreach_addcdiv_(dense, m_dense, denom, value=-step_size)
            m = m_table.index_select(0, distinct).mul_(beta1)
            m.add_(grad_rows, alpha=1 - beta1)
            v = v_table.index_select(0, distinct).mul_(beta2)
            v.addcmul_(grad_rows, grad_rows, value=1 - beta2)
            _flush_subnormal(m, v)
            m_table.index_copy_(0, distinct, m)
            v_table.index_copy_(0, distinct, v)
            table.index_add_(
                0, distinct, m.div_(_denominator(v, eps)), alpha=-step_size
            )
        ms = 1e3 * (time.perf_counter() - start) / len(batches)
    return ms, [table, bias, weight, out_bias], float(torch.stack(losses).mean())


def matmul_steps(module, batches):
    """The output layer's three fp32 matrix products per batch, alone."""
    hidden = module.input_weight.shape[1]
    weight = module.layers[1].weight.detach().clone()
    bias = module.layers[1].bias.detach().clone()
    active = torch.rand(batches[0][0].shape[0], hidden)
    grad = torch.rand(active.shape[0], weight.shape[0])
    forward, grad_weight, grad_input = products()
    start = time.perf_counter()
    for _ in batches:
        forward(active, weight, bias)
        grad_weight(grad, active)
        grad_input(grad, weight)
    return 1e3 * (time.perf_counter() - start) / len(batches)


def largest_difference(net, weights):
    """Largest |a - b| / max|b| over the parameters of the two trainings."""
    ours = [
        net.input_weight,
        net.input_bias,
        net.layers[1].weight,
        net.layers[1].bias,
    ]
    return max(
        float((a.detach() - b).abs().max() / b.abs().max())
        for a, b in zip(ours, weights)
    )


def parse_arguments(argv, description, rounds, flags=()):
    """The options of this script, which ``compile_floor_cpu.py`` shares
    (with ``flags`` of its own: ``(name, help)`` pairs of on/off options)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--dataset", default="pypi-maskedword")
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--rtol", type=float, default=1e-3)
    parser.add_argument("--check-steps", type=int, default=10)
    for name, help in flags:
        parser.add_argument(name, action="store_true", help=help)
    return parser.parse_args(argv)


def main(argv=None):
    import common

    import sklearn_mach

    args = parse_arguments(argv, __doc__.splitlines()[0], rounds=2)
    settings = dict(common.CPU_EPOCH_SETTINGS, n_repetitions=1)
    X, y, n_classes = common.training_subset(args.dataset, args.rows)
    module, arrays, batches = prepare(X, y, n_classes, settings)
    from sklearn_mach import _network
    from sklearn_mach._device import cpu_vendor

    print(
        f"sklearn_mach {sklearn_mach.__version__}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {cpu_vendor() or 'cpu'}; "
        f"products through {'oneDNN' if _network._ONEDNN_LINEAR else 'BLAS'}.\n\n"
        f"One network, one epoch of {X.shape[0]:,} rows of {args.dataset} "
        f"({len(batches):,} steps); B={settings['n_buckets']}, batch "
        f"{settings['batch_size']}, {settings['n_hashed_features']:,} hashed "
        f"rows, lr {settings['lr']}; sparse input gradient: "
        f"{module.sparse_gradient}.\n"
    )
    if not module.sparse_gradient:
        raise SystemExit("the hand-written step covers sparse input gradients only")
    runs = {
        "fit": lambda: fit_epoch(module, arrays, settings)[0],
        "library step": lambda: library_steps(module, batches, settings)[0],
        "hand-written step": lambda: hand_written_steps(
            module, batches, settings["lr"]
        )[0],
        "matrix products only": lambda: matmul_steps(module, batches),
    }
    # warm up allocators and imports outside the timings
    library_steps(module, batches[:20], settings)
    hand_written_steps(module, batches[:20], settings["lr"])
    times = {name: [] for name in runs}
    for round_ in range(args.rounds):
        names = list(runs) if round_ % 2 == 0 else list(runs)[::-1]
        for name in names:
            times[name].append(runs[name]())
    _, fit_net = fit_epoch(module, arrays, settings)
    _, library_net, library_loss = library_steps(module, batches, settings)
    _, _, hand_loss = hand_written_steps(module, batches, settings["lr"])
    same_as_fit = all(
        torch.equal(a, b)
        for a, b in zip(fit_net.parameters(), library_net.parameters())
    )
    first = batches[: args.check_steps]
    difference = largest_difference(
        library_steps(module, first, settings)[1],
        hand_written_steps(module, first, settings["lr"])[1],
    )
    print("| run | ms per step, each round | mean | share of fit |")
    print("|---|---|---|---|")
    fit = np.mean(times["fit"])
    for name, values in times.items():
        print(
            f"| {name} | {', '.join(f'{v:.2f}' for v in values)} "
            f"| {np.mean(values):.2f} | {np.mean(values) / fit:.0%} |"
        )
    print(
        f"\nLibrary step's weights after the epoch equal fit's: "
        f"{'yes' if same_as_fit else 'NO'} (the same batches, the same updates)."
    )
    print(
        f"Hand-written against library weights after {len(first)} steps: "
        f"largest difference {difference:.1e} of the largest weight "
        f"({'within' if difference <= args.rtol else 'OUTSIDE'} rtol "
        f"{args.rtol:g}).  Mean training loss over the epoch: library "
        f"{library_loss:.4f}, hand-written {hand_loss:.4f}."
    )
    if not same_as_fit:
        raise SystemExit("the library step does not train on fit's batches")
    if difference > args.rtol:
        raise SystemExit("the hand-written step does not compute the library's update")


if __name__ == "__main__":
    main()
