"""Side-by-side benchmarks of gdbench against the usual alternatives (``make bench``).

Every benchmark runs gdbench and its baseline on the same machine in the same script and
reports the measured RATIO (baseline time / gdbench time) next to its target, with PASS or
MISS; nothing is tuned to make a baseline lose (where a baseline has a faster configuration,
e.g. single-threaded BLAS for scikit-learn's tiny fits, the faster one is used and both are
recorded).

- ``ngjordan``: the Ng & Jordan grid (naive Bayes and logistic regression, sizes x seeds) as
  one gdbench program per (task, model) against a scikit-learn loop over the same cells (same
  training subsets from ``gdbench.plan``, same standardization), warm and whole-process.
- ``mlp_torch``: the MLP trained by gdbench's engine against the same MLP in PyTorch on CPU,
  per step and for 10 seeds (one vmapped gdbench program against 10 sequential PyTorch runs),
  plus the achieved FLOP/s of the compute-bound MLP against the measured matmul peak.
- ``scaling``: the time of one gdbench grid as the number of seeds or sizes grows.

``python -m gdbench.benchmarks [--quick] [--out FILE.md]`` runs them and writes a Markdown table
and a JSON file with the raw numbers and the machine (see ``__main__``). This package imports
no JAX at import time, so the scikit-learn baseline script (``sklearn_loop``) runs without it.
"""
