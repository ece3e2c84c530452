#!/usr/bin/env bash
# The runs behind benchmarks/results/ and the docs' Benchmarks page, in order,
# on an otherwise idle machine (2 cores; about two hours). Each writes its
# own table; napkinxc and omikuji come from `pip install -e ".[benchmark]"`.
set -euo pipefail
cd "$(dirname "$0")"
export SKLEARN_MACH_DATA="${SKLEARN_MACH_DATA:-$(cd ../.. && pwd)/shared/data}"
# the 0.1 comparisons below need a checkout of 0.1: fail now, not hours in
: "${V01:?set V01 to a checkout of 0.1 (git worktree add <dir> 91a7954)}"
# Files written with > get the script's raw output: the summaries written by
# hand above it in subnormal.md, loss_cpu.md, profile_cpu_after.md,
# decode_blocks.md and the pair files are to be rewritten from the new numbers.

# README command (1): MACHClassifier() against the full network, small K
python bench_accuracy.py --datasets bibtex delicious --output results/accuracy.md
# the default model saved in float32, float16 and bfloat16 (about 25 min)
python bench_float16.py --output results/float16_pypi.md

# dataset x method, small K, with the peers
python bench_scale.py --datasets bibtex delicious --methods mach full ovr-lr napkinxc omikuji \
    --timeout 1800 --output results/scale_real.md

# pypi-maskedword, all 1.12M training rows, defaults against the peers
python bench_scale.py --datasets pypi-maskedword --methods mach full napkinxc omikuji \
    --max-test 20000 --timeout 5400 --output results/scale_pypi.md

# synthetic K = 10^4 and 10^5 (200k training rows), defaults against the peers
python bench_scale.py --datasets synthetic-K --k-sweep 10000 100000 --max-train 200000 \
    --n-features 20000 --methods mach full napkinxc omikuji --timeout 3600 \
    --output results/scale_1e5.md

# CPU epoch target (issue 8): where a step goes, and one group against one
# network at a time (results/profile_cpu_after.md, results/cpu_grouping.md).
python profile_cpu.py --rows 300000 > results/profile_cpu_after.md
for run in 1 2; do
    python profile_cpu.py --rows 0 --no-profile
    python profile_cpu.py --rows 0 --no-profile --grouped
    python profile_cpu.py --rows 300000 --no-profile --defaults
    python profile_cpu.py --rows 300000 --no-profile --defaults --grouped
done
# results/epoch_cpu_pair.md: 0.1 (a checkout of 91a7954 in $V01) and this
# tree, alternating; profile_cpu.py times whichever sklearn_mach it imports
for run in 1 2 3; do
    PYTHONPATH="$V01" python profile_cpu.py --rows 0 --no-profile
    python profile_cpu.py --rows 0 --no-profile
done
# results/decode_memory.md: peak memory at 3 million classes (run once more
# with PYTHONPATH at an export of 6b6505e for its "before" table)
python bench_decode_memory.py
# results/decode_memory.md, last section: exact top-k's pruning bound
python bench_pruning.py
# results/large_k.md: exact predict_top_k with a large k (run once more with
# PYTHONPATH at an export of bd3923b for its "before" table)
python bench_large_k.py --output results/large_k.md
# results/stream.md: ms per partial_fit call over a 4,000-call stream, and
# save/load of its histories (run once more with PYTHONPATH at an export of
# 940871e for its "before" part)
python bench_stream.py
# results/subnormal.md: LazyAdam with and without its subnormal flush
python bench_subnormal.py --rounds 4 > results/subnormal.md
python bench_subnormal.py --rounds 4 --defaults >> results/subnormal.md
# results/floor_cpu.md: the library's step against a hand-written one (the
# same arithmetic without autograd, skorch or an optimizer object) and the
# matrix products alone, on fit's batches, each run after one of 0.1's epochs
for run in 1 2; do
    PYTHONPATH="$V01" python profile_cpu.py --rows 0 --no-profile
    python floor_cpu.py --rows 0 --rounds 2
done
# results/compile_cpu.md: the hand-written step with its elementwise parts
# compiled by torch.compile (a fresh, empty inductor cache: a cold compile)
TORCHINDUCTOR_CACHE_DIR=$(mktemp -d) python compile_floor_cpu.py --rounds 3 > results/compile_cpu.md
# results/loss_cpu.md: the shipped cross-entropy against F.cross_entropy at
# the defaults (one network), then the operators of a defaults step with each
python bench_loss.py --rows 100000 300000 --rounds 2 > results/loss_cpu.md
for flag in --torch-loss "" "" --torch-loss; do
    python profile_cpu.py --defaults --rows 100000 --top 14 $flag >> results/loss_cpu.md
done
# results/cpu_n_jobs.md: repetitions in threads, in processes, in turn
for run in 1 2 3; do
    python profile_cpu.py --rows 300000 --no-profile
    python profile_cpu.py --rows 300000 --no-profile --n-jobs 2
    python profile_cpu.py --rows 300000 --no-profile --n-jobs 2 --backend loky
done
# results/decode_blocks.md: exact top-5 and predict_proba against working_memory
python bench_decode_blocks.py > results/decode_blocks.md
# results/sketch.md: sparse label sketches, the product against the entries
(cd .. && { python benchmarks/bench_sketch.py
  python benchmarks/bench_sketch.py --classes 100000 1000000 --rows 81000 810000
  python benchmarks/bench_sketch.py --classes 2000 --rows 20000 --labels 4 8 12 16 24 32 48 64 --buckets 64
  python benchmarks/bench_sketch.py --classes 2000 --rows 2000 --labels 500 --buckets 64
  python benchmarks/bench_sketch.py --classes 2000 --rows 500 --labels 2000 --buckets 512
  python benchmarks/bench_sketch.py --classes 100000 --rows 2000 --labels 250 500 --buckets 2048
} > /tmp/sketch_tables.md)  # the head of results/sketch.md is hand-written
# results/load_memory.md: save's and load's peak memory (this tree; the
# table's other columns: PYTHONPATH=<61d4d58 export>)
python bench_load_memory.py
# results/text_dtype.md: tf-idf features in float64 and float32
python bench_text_dtype.py --rounds 3 > results/text_dtype.md
# results/load_xc.md: load_xc_repository's memory and time on a file of short
# lines (the "before" column: a checkout of the previous reader, 74049e3)
python bench_load_xc.py --rounds 3 --other "${LOAD_XC_BEFORE:-$V01}"

# On a machine with a GPU (results/gpu.md, results/profile_gpu.txt; the docs'
# "On one GPU" section): the whole test suite on CUDA, then the tables.
if python -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then
    (cd .. && python -m pytest -q tests)
    # replaces gpu.md whole: its hand-written head (commit, the suite's
    # result, the before/after epoch table) and the earlier runs below it
    python bench_gpu.py --output results/gpu.md
    python profile_gpu.py > results/profile_gpu.txt
fi
