"""Does torch.compile (inductor, CPU) make the hand-written training step faster?

    python benchmarks/compile_floor_cpu.py --rounds 3 > benchmarks/results/compile_cpu.md
    python benchmarks/compile_floor_cpu.py --dynamic --rounds 3
    python benchmarks/compile_floor_cpu.py --dataset synthetic-100 --rows 3000 --rounds 1

``floor_cpu.py``'s hand-written step (no autograd, no optimizer object)
still runs some forty torch operators per step, each a pass over memory
and a dispatch from Python.  This script writes the same step with its
elementwise parts as four functions and compiles each with
``torch.compile`` (inductor's C++ backend):

- ``relu_fwd``: the hidden layer's bias and ReLU;
- ``head``: softmax, the weighted mean cross-entropy, its gradient with
  respect to the logits and the output bias's gradient;
- ``relu_bwd_dense_adam``: the ReLU's backward and Adam on the three dense
  parameters (LazyAdam's subnormal flush and sqrt floor included);
- ``rows_adam``: Adam on the input table's touched rows, with the number
  of rows marked dynamic (it changes at every step), so it compiles once.

``F.embedding_bag``, the table gradient's bag sum
(``sklearn_mach._network._sum_by_row``) and the output layer's three
products (``floor_cpu.products``: oneDNN on AMD CPUs) stay eager, between
the compiled pieces.

``--dynamic`` compiles the pieces for any sizes (``dynamic=True``), as
a library would have to (the batch size, the hidden width and ``B``
change between fits and for an epoch's last batch), instead of for the
sizes of their first call.

On ``--rows`` random rows of ``--dataset`` (one network, the batches fit
cuts for it, at the CPU-epoch target's settings), it prints:

- the compile cost: the wall time of the first compiled step (the four
  pieces compiled) and of the next steps, with the inductor cache
  directory (``TORCHINDUCTOR_CACHE_DIR``) and whether it was empty before
  (cold) or not (warm: compiled kernels are loaded from it), and the cache
  hits and misses;
- ms per step over the epoch's full-size batches, in ABBA order over
  ``--rounds`` rounds, of the eager hand-written step
  (``floor_cpu.hand_written_steps``), the compiled step, and the compiled
  step's code run eagerly (what the rewrite alone changes);
- the number of graphs dynamo compiled (its counters), also after the
  timings: more than four means a recompilation;
- the compiled step's weights after ``--check-steps`` steps against the
  eager hand-written step's: the largest difference must be within
  ``--rtol`` of the largest weight, or the script exits non-zero.

The epoch's last, smaller batch is skipped (every step runs the full-size
batches only): a second batch size would compile the three pieces that
depend on it a second time, a cost the timed rounds should not hold.
Each call compiles anew (it resets dynamo first), from the disk cache if
warm.  Timings are of one process: only runs made together compare, and
only on a quiet machine (with another process busy on one of two cores,
every two-thread operator waits for it: steps take tens of times as long).
"""

import sys
import time
from pathlib import Path

import numpy as np
import torch

from sklearn_mach._optim import _sqrt_floor

sys.path.insert(0, str(Path(__file__).resolve().parent))

BETAS = (0.9, 0.999)
EPS = 1e-8
TINY = torch.finfo(torch.float32).tiny
FLOOR = _sqrt_floor(EPS, torch.float32)  # LazyAdam's floor under sqrt


def _adam_moments(m, v, grad):
    """New moments (subnormals flushed, as LazyAdam) and the update direction."""
    beta1, beta2 = BETAS
    m = m * beta1 + grad * (1 - beta1)
    v = v * beta2 + grad * grad * (1 - beta2)
    m = torch.where(m.abs() > TINY, m, 0.0)
    v = torch.where(v > TINY, v, 0.0)
    return m, v, m / (v.clamp_min(FLOOR).sqrt() + EPS)


def relu_fwd(hidden, bias):
    return (hidden + bias).clamp_min(0)


def head(logits, y, w):
    """Gradient of the weighted mean cross-entropy wrt the logits, the loss,
    and the output bias's gradient."""
    p = torch.softmax(logits, 1)
    share = w / w.sum()
    onehot = torch.arange(p.shape[1], device=p.device)[None, :] == y[:, None]
    loss = -(torch.where(onehot, p, 0).sum(1).log() * share).sum()
    grad = (p - onehot.to(p.dtype)) * share[:, None]
    return grad, loss, grad.sum(0)


def relu_bwd_dense_adam(grad_input, active, grad_weight, grad_out_bias, state, step):
    """The hidden layer's gradient; Adam on the dense parameters, in place."""
    grad_hidden = grad_input * (active > 0)
    grads = [grad_hidden.sum(0), grad_weight, grad_out_bias]
    for p, g, m, v in zip(state["dense"], grads, state["m_dense"], state["v_dense"]):
        m_new, v_new, update = _adam_moments(m, v, g)
        m.copy_(m_new)
        v.copy_(v_new)
        p.sub_(update * step)
    return grad_hidden


def rows_adam(table, m_table, v_table, rows, grad_rows, step):
    """Adam on the table's ``rows`` (distinct), in place."""
    m, v, update = _adam_moments(m_table[rows], v_table[rows], grad_rows)
    m_table[rows] = m
    v_table[rows] = v
    table[rows] = table[rows] - update * step


PIECES = {
    "relu": relu_fwd,
    "head": head,
    "bwd": relu_bwd_dense_adam,
    "rows": rows_adam,
}


def compiled_pieces(dynamic=False):
    """The pieces compiled; ``dynamic``: for any sizes (one graph each for
    every batch size, width and ``B``, as a library would need), else for
    the first call's (the table's row count is dynamic either way)."""
    return {
        name: torch.compile(fn, backend="inductor", dynamic=dynamic or None)
        for name, fn in PIECES.items()
    }


def pieces_steps(module, batches, lr, pieces):
    """``floor_cpu.hand_written_steps``'s training through ``pieces``.

    ms per step, the weights (table, input bias, output weight, output
    bias) and the mean loss, from ``module``'s weights and fresh moments.
    """
    import floor_cpu

    from sklearn_mach._network import _sum_by_row
    from sklearn_mach._optim import LazyAdam

    forward, grad_weight, grad_input = floor_cpu.products()
    with torch.no_grad():
        table = module.input_weight.detach().clone()
        rows_of = module.feature_rows
        linear = module.layers[1]
        dense = [
            module.input_bias.detach().clone(),
            linear.weight.detach().clone(),  # (B, hidden)
            linear.bias.detach().clone(),
        ]
        state = {
            "dense": dense,
            "m_dense": [torch.zeros_like(p) for p in dense],
            "v_dense": [torch.zeros_like(p) for p in dense],
        }
        m_table, v_table = torch.zeros_like(table), torch.zeros_like(table)
        # tensors, not floats: a float argument would be a constant of the graph
        steps = [
            torch.tensor(LazyAdam._step_size(dict(lr=lr, betas=BETAS), t))
            for t in range(1, len(batches) + 1)
        ]
        losses = []
        start = time.perf_counter()
        for (X, y, w), step in zip(batches, steps):
            rows, crow, values, hidden = floor_cpu.table_forward(X, rows_of, table)
            active = pieces["relu"](hidden, dense[0])
            grad_logits, loss, grad_out_bias = pieces["head"](
                forward(active, dense[1], dense[2]), y, w
            )
            losses.append(loss)
            grad_hidden = pieces["bwd"](
                grad_input(grad_logits, dense[1]),
                active,
                grad_weight(grad_logits, active),
                grad_out_bias,
                state,
                step,
            )
            distinct, grad_rows = _sum_by_row(grad_hidden, rows, crow, values)
            torch._dynamo.mark_dynamic(distinct, 0)
            torch._dynamo.mark_dynamic(grad_rows, 0)
            pieces["rows"](table, m_table, v_table, distinct, grad_rows, step)
        ms = 1e3 * (time.perf_counter() - start) / len(batches)
    return ms, [table, *dense], float(torch.stack(losses).mean())


def largest_difference(weights, reference):
    """Largest |a - b| / max|b| over the parameters of two trainings."""
    return max(
        float((a - b).abs().max() / b.abs().max()) for a, b in zip(weights, reference)
    )


def inductor_cache():
    """The inductor cache directory and whether it holds nothing yet."""
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    path = Path(cache_dir())  # TORCHINDUCTOR_CACHE_DIR, else a default (created)
    return path, not any(path.iterdir())


def graph_counts():
    from torch._dynamo.utils import counters

    return (
        f"{counters['stats']['unique_graphs']} graphs compiled "
        f"({sum(counters['recompiles'].values())} recompilations, "
        f"{sum(counters['graph_break'].values())} graph breaks)"
    )


def main(argv=None):
    import common
    import floor_cpu
    from torch._dynamo.utils import counters

    import sklearn_mach

    args = floor_cpu.parse_arguments(
        argv,
        __doc__.splitlines()[0],
        rounds=3,
        flags=[("--dynamic", "compile for any sizes (dynamic=True)")],
    )
    settings = dict(common.CPU_EPOCH_SETTINGS, n_repetitions=1)
    lr = settings["lr"]
    X, y, n_classes = common.training_subset(args.dataset, args.rows)
    module, _, batches = floor_cpu.prepare(X, y, n_classes, settings)
    if not module.sparse_gradient:
        raise SystemExit("the hand-written step covers sparse input gradients only")
    full = [b for b in batches if b[0].shape[0] == settings["batch_size"]]
    from sklearn_mach import _network
    from sklearn_mach._device import cpu_vendor

    cache, cold = inductor_cache()
    print(
        f"sklearn_mach {sklearn_mach.__version__}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {cpu_vendor() or 'cpu'}; "
        f"products through {'oneDNN' if _network._ONEDNN_LINEAR else 'BLAS'}.\n\n"
        f"One network, one epoch of {X.shape[0]:,} rows of {args.dataset}: "
        f"its {len(full):,} full batches (of {len(batches):,}); "
        f"B={settings['n_buckets']}, batch {settings['batch_size']}, "
        f"{settings['n_hashed_features']:,} hashed rows, lr {lr}.\n\n"
        f"Inductor cache (TORCHINDUCTOR_CACHE_DIR): `{cache}`, "
        f"{'empty before this run: a cold compile' if cold else 'not empty: warm'}"
        f"; pieces compiled for "
        f"{'any sizes (dynamic=True)' if args.dynamic else 'the sizes they see'}."
    )
    torch._dynamo.reset()  # compile in this call, also when called again
    counters.clear()
    compiled = compiled_pieces(args.dynamic)
    floor_cpu.hand_written_steps(module, full[:20], lr)  # oneDNN's primitives
    start = time.perf_counter()
    pieces_steps(module, full[:1], lr, compiled)
    first = time.perf_counter() - start
    next_steps = full[1:21]
    next_ms = pieces_steps(module, next_steps, lr, compiled)[0]
    hits = counters["inductor"]["fxgraph_cache_hit"]
    misses = counters["inductor"]["fxgraph_cache_miss"]
    print(
        f"\nFirst compiled step: {first:.1f} s; next {len(next_steps)} steps "
        f"{next_ms:.2f} ms each; {graph_counts()}; inductor's FX graph cache: "
        f"{hits} hits, {misses} misses.\n"
    )

    eager, fast, rewritten = (
        "hand-written step, eager",
        "compiled step (inductor)",
        "compiled step's code, eager",
    )
    runs = {
        eager: lambda b: floor_cpu.hand_written_steps(module, b, lr),
        fast: lambda b: pieces_steps(module, b, lr, compiled),
        rewritten: lambda b: pieces_steps(module, b, lr, PIECES),
    }
    first_steps = full[: args.check_steps]
    reference = runs[eager](first_steps)[1]
    differences = {
        name: largest_difference(runs[name](first_steps)[1], reference)
        for name in (fast, rewritten)
    }
    runs[rewritten](full[:20])  # warm up
    times = {name: [] for name in runs}
    losses = {}
    for round_ in range(args.rounds):
        names = list(runs) if round_ % 2 == 0 else list(runs)[::-1]
        for name in names:
            ms, _, losses[name] = runs[name](full)
            times[name].append(ms)
    eager_ms = np.mean(times[eager])
    print("| step | ms per step, each round | mean | share of eager | mean loss |")
    print("|---|---|---|---|---|")
    for name, values in times.items():
        print(
            f"| {name} | {', '.join(f'{v:.3f}' for v in values)} "
            f"| {np.mean(values):.3f} | {np.mean(values) / eager_ms:.0%} "
            f"| {losses[name]:.4f} |"
        )
    compiled_difference = differences[fast]
    print(
        f"\nAfter the timings: {graph_counts()}.\n\n"
        f"Against the eager hand-written step's weights after {len(first_steps)} "
        f"steps: the compiled step's largest difference {compiled_difference:.1e} "
        f"of the largest weight "
        f"({'within' if compiled_difference <= args.rtol else 'OUTSIDE'} rtol "
        f"{args.rtol:g}); its code run eagerly "
        f"{differences[rewritten]:.1e} (the order of summation differs)."
    )
    if compiled_difference > args.rtol:
        raise SystemExit(
            "the compiled step does not compute the hand-written step's update"
        )


if __name__ == "__main__":
    main()
