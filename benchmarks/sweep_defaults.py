"""Sweep of MACH hyper-parameters: the measurements behind the ``"auto"`` defaults.

Each configuration is trained one epoch at a time (``partial_fit``), and after
every epoch it is evaluated on the test rows for several numbers of
repetitions at once: the first ``r`` networks of an ``R``-network model are
exactly an ``r``-repetition MACH model (independent hash functions and
networks), so one training run gives the whole ``R`` curve.  Every
evaluation is one JSON line appended to ``--output`` (a run can be stopped and
resumed: configurations already there are skipped), and ``--render`` turns
the lines into the Markdown tables under ``benchmarks/results/``.

    python benchmarks/sweep_defaults.py --dataset pypi-maskedword --max-train 300000 \\
        --max-test 20000 --epochs 4 --base '{"n_buckets": 2048, "n_repetitions": 4}' \\
        --grid '{}' '{"n_buckets": 1024}' '{"lr": 0.003}' --output benchmarks/results/sweeps/pypi.jsonl
    python benchmarks/sweep_defaults.py --render benchmarks/results/sweeps/pypi.jsonl

Metrics (the ``.jsonl`` keys ``p1`` and ``p5``): for single-label data the
accuracy of the first guess and of the first five (top-1, and top-5 =
``5 * P@5``); for multilabel data P@1 and P@5.  ``model_mb`` counts
float32 parameters of the ``r`` networks; the ``fp16`` columns evaluate the same weights rounded to float16 (as stored by
``save(..., weights_dtype="float16")``) at the last epoch (default
:class:`~sklearn_mach.MACHNetwork` networks only: a custom module has no
``init_kwargs`` to rebuild it from, and gets no ``fp16`` column).
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from common import csr_tensor, is_multiclass, targets_of  # noqa: E402


def bucket_logits(networks, X, block=2000):
    """Per network, the (n, B) bucket logits of the rows of X (float32)."""
    outs = [[] for _ in networks]
    with torch.no_grad():
        for start in range(0, X.shape[0], block):
            batch = csr_tensor(X[start : start + block])
            for out, net in zip(outs, networks):
                out.append(net.eval()(batch))
    return [torch.cat(o) for o in outs]


def _bucket_scores(z, aggregation, multilabel):
    """What one repetition adds to a class's score, as the library merges it
    (``sklearn_mach._decoding.BUCKET_OUTPUT``): probabilities under "mean";
    under "logit_sum" log-probabilities (multiclass; floored at 1e-30, as
    the committed sweeps were computed) or raw logits (multilabel)."""
    if aggregation == "logit_sum" and multilabel:
        return z
    p = torch.sigmoid(z) if multilabel else torch.softmax(z, dim=1)
    return torch.log(p.clamp_min(1e-30)) if aggregation == "logit_sum" else p


def evaluate(
    logits, buckets, Y_test, repetitions, aggregation, multilabel, k=5, block=2000
):
    """P@1 and P@k of the first r repetitions' merged scores, for each r."""
    Y_test = sp.csr_matrix(Y_test)
    n = Y_test.shape[0]
    hits = {r: np.zeros(k) for r in repetitions}
    for start in range(0, n, block):
        stop = min(n, start + block)
        total = None
        for r in range(max(repetitions)):
            p = _bucket_scores(logits[r][start:stop], aggregation, multilabel)
            gathered = p.index_select(1, torch.from_numpy(buckets[r].astype(np.int64)))
            total = gathered if total is None else total + gathered
            if r + 1 in hits:
                top = torch.topk(total, k, dim=1).indices.numpy()
                truth = Y_test[start:stop]
                rows = np.repeat(np.arange(stop - start), k)
                found = np.asarray(truth[rows, top.ravel()]).reshape(-1, k) > 0
                hits[r + 1] += found.sum(axis=0)
    return {r: (h[0] / n, h.sum() / (n * k)) for r, h in hits.items()}


def run_config(data, params, args, out, done):
    from sklearn_mach import MACHClassifier

    X, Y, X_test, Y_test = data
    multiclass = is_multiclass(Y)
    y = targets_of(Y)
    classes = np.arange(Y.shape[1])
    key = json.dumps(params, sort_keys=True)
    if key in done:
        print(f"skip (done): {key}", flush=True)
        return
    clf = MACHClassifier(random_state=args.seed, **params)
    R = clf.n_repetitions
    repetitions = [r for r in args.eval_repetitions if r <= R] or [R]
    fit_s = 0.0
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        clf.partial_fit(X, y, classes=classes)
        fit_s += time.perf_counter() - start
        start = time.perf_counter()
        logits = bucket_logits(clf.networks_, X_test)
        buckets = clf.label_hasher_.buckets_
        last = epoch == args.epochs
        results = {
            agg: evaluate(logits, buckets, Y_test, repetitions, agg, not multiclass)
            for agg in ("mean", "logit_sum")
        }
        fp16 = None
        if last and all(hasattr(n, "init_kwargs") for n in clf.networks_):
            # the same weights rounded to float16
            halves = []
            for net in clf.networks_:
                half = type(net)(**net.init_kwargs)
                half.load_state_dict(
                    {
                        k: v.half().to(v.dtype) if v.is_floating_point() else v
                        for k, v in net.state_dict().items()
                    }
                )
                halves.append(half)
            fp16 = evaluate(
                bucket_logits(halves, X_test),
                buckets,
                Y_test,
                repetitions,
                "mean",
                not multiclass,
            )
        eval_s = time.perf_counter() - start
        per_network = sum(p.numel() * 4 for p in clf.networks_[0].parameters()) / 1e6
        for aggregation, by_r in results.items():
            for r, (p1, pk) in by_r.items():
                row = dict(
                    dataset=args.dataset,
                    n_classes=Y.shape[1],
                    n_train=X.shape[0],
                    n_test=X_test.shape[0],
                    params=params,
                    epoch=epoch,
                    repetitions=r,
                    aggregation=aggregation,
                    p1=p1,
                    p5=pk,
                    multiclass=multiclass,
                    fit_s=fit_s,
                    eval_s=eval_s,
                    model_mb=per_network * r,
                )
                if fp16 is not None and aggregation == "mean":
                    row.update(fp16_p1=fp16[r][0], fp16_p5=fp16[r][1])
                out.write(json.dumps(row) + "\n")
                out.flush()
        best = results["mean"][max(repetitions)]
        print(
            f"{key} epoch {epoch}: R={max(repetitions)} P@1 {best[0]:.4f} P@5 {best[1]:.4f} "
            f"fit {fit_s:.0f}s eval {eval_s:.0f}s",
            flush=True,
        )


def render(path):
    """Two Markdown tables of a run: each configuration and R at its last epoch
    (both aggregations), then every epoch at the largest R."""
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line]
    key = lambda r: json.dumps(r["params"], sort_keys=True)  # noqa: E731
    by = {}
    for row in rows:
        by[(key(row), row["repetitions"], row["epoch"], row["aggregation"])] = row
    last = {}
    for k, _, epoch, _ in by:
        last[k] = max(last.get(k, 0), epoch)
    scale = 5 if rows and rows[0]["multiclass"] else 1
    top = "top-1, top-5" if scale == 5 else "P@1, P@5"

    def label(k):
        return ", ".join(
            f"{n}={v}" for n, v in sorted(json.loads(k).items()) if n != "n_repetitions"
        )

    def cell(row):
        return "" if row is None else f"{row['p1']:.4f}, {row['p5'] * scale:.4f}"

    lines = [
        f"Last epoch of each configuration ({rows[0]['dataset']}, "
        f"{rows[0]['n_train']:,} training rows, {rows[0]['n_test']:,} test rows):",
        "",
        f"| configuration | R | epochs | {top} (logit_sum) | {top} (mean) | "
        "top-1 float16 (mean) | model MB float32 | fit s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for k in dict.fromkeys(key(r) for r in rows):
        for R in sorted({r["repetitions"] for r in rows if key(r) == k}):
            mean = by.get((k, R, last[k], "mean"))
            logit = by.get((k, R, last[k], "logit_sum"))
            fp16 = f"{mean['fp16_p1']:.4f}" if mean and "fp16_p1" in mean else ""
            lines.append(
                f"| {label(k)} | {R} | {last[k]} | {cell(logit)} | {cell(mean)} | "
                f"{fp16} | {mean['model_mb']:.1f} | {mean['fit_s']:.0f} |"
            )
    lines += [
        "",
        "Every epoch, at the largest R:",
        "",
        f"| configuration | R | epoch | {top} (logit_sum) | {top} (mean) | fit s |",
        "|---|---|---|---|---|---|",
    ]
    for k in dict.fromkeys(key(r) for r in rows):
        R = max(r["repetitions"] for r in rows if key(r) == k)
        for epoch in range(1, last[k] + 1):
            mean = by.get((k, R, epoch, "mean"))
            logit = by.get((k, R, epoch, "logit_sum"))
            fit = (mean or logit)["fit_s"]
            lines.append(
                f"| {label(k)} | {R} | {epoch} | {cell(logit)} | {cell(mean)} | "
                f"{fit:.0f} |"
            )
    return "\n".join(lines)


def load(dataset, max_train, seed):
    """A real dataset (``common.load_dataset``) or ``synthetic-K``: bench_scale's
    synthetic set (``common.synthetic_dataset``, 10,000 test rows, 20,000
    features)."""
    if not dataset.startswith("synthetic-"):
        return common.load_dataset(dataset, max_train=max_train, seed=seed)
    n_classes = int(dataset.split("-", 1)[1])
    return common.synthetic_dataset(n_classes, max_train, seed=seed)


def render_scale(paths):
    """The last epoch of sweep runs as rows of bench_scale's table (logit_sum),
    so that the docs' accuracy-size figure draws them beside the peers."""
    header = "| dataset | K | n_train | n_test | method | config | epochs | P@1 | P@5 | model MB |"
    lines = [
        "MACH settings of the sweeps (`benchmarks/sweep_defaults.py`), last epoch, "
        "aggregation `logit_sum`, model MB = float32 parameters; P@5 = top-5 / 5.",
        "",
        header,
        "|" + "---|" * 10,
    ]
    for path in paths:
        rows = [
            json.loads(line) for line in Path(path).read_text().splitlines() if line
        ]
        last = max(r["epoch"] for r in rows)
        for row in rows:
            if row["epoch"] != last or row["aggregation"] != "logit_sum":
                continue
            p = row["params"]
            config = f"B={p['n_buckets']} R={row['repetitions']}"
            if p.get("n_hashed_features"):
                config += f" n_hashed_features={p['n_hashed_features']}"
            lines.append(
                f"| {row['dataset']} | {row.get('n_classes', '')} | "
                f"{row['n_train']:,} | {row['n_test']:,} | mach-sweep | {config} | {last} | "
                f"{row['p1']:.4f} | {row['p5']:.4f} | {row['model_mb']:.2f} |"
            )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dataset", default="pypi-maskedword")
    parser.add_argument("--max-train", type=int, default=None)
    parser.add_argument("--max-test", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--base", type=json.loads, default={})
    parser.add_argument(
        "--grid",
        type=json.loads,
        nargs="+",
        default=[{}],
        help="JSON overrides of --base, one configuration each",
    )
    parser.add_argument(
        "--eval-repetitions", type=int, nargs="+", default=[1, 2, 4, 8, 16]
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="results/sweep.jsonl")
    parser.add_argument(
        "--render", metavar="JSONL", help="print the Markdown table of a run"
    )
    parser.add_argument(
        "--render-scale",
        metavar="JSONL",
        nargs="+",
        help="print the last epochs as rows of bench_scale's table",
    )
    args = parser.parse_args(argv)
    if args.render:
        print(render(args.render))
        return
    if args.render_scale:
        print(render_scale(args.render_scale))
        return
    X, Y, X_test, Y_test = load(args.dataset, args.max_train, args.seed)
    if args.max_test is not None and args.max_test < X_test.shape[0]:
        rows = np.sort(
            np.random.default_rng(args.seed).permutation(X_test.shape[0])[
                : args.max_test
            ]
        )
        X_test, Y_test = X_test[rows], Y_test[rows]
    output = Path(args.output)
    done = set()  # configurations whose last epoch is recorded
    if output.exists():
        rows = [
            json.loads(line) for line in output.read_text().splitlines() if line.strip()
        ]
        done = {
            json.dumps(row["params"], sort_keys=True)
            for row in rows
            if row["epoch"] == args.epochs and "fp16_p1" in row
        }
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("a") as out:
        for override in args.grid:
            run_config(
                (X, Y, X_test, Y_test), {**args.base, **override}, args, out, done
            )


if __name__ == "__main__":
    main()
