"""Measurement: XLA cost analysis with loops counted by trip count, memory analysis,
steady-state timing, device peaks, and the measurement columns of engine rows.

References are analytic: the FLOPs of a matmul (2 M N K) and of a loop of matmuls (trip count
x that), the bytes of a program's operands and results, the published peaks (cores x clock x 2), and
for an engine grid the matmul FLOPs of an MLP's training steps. No assertion depends on how
fast anything runs.
"""

from __future__ import annotations

import math
import re
import types

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from gdbench import compile_cache, engine, env, models, tasks, timing
from gdbench import cost as xla_cost
from gdbench.cost import program_cost
from gdbench.engine import run_grid
from gdbench.results import schema
from gdbench.timing import steady_state

# --- cost analysis ---------------------------------------------------------------------------


def _compile(f, *args):
    return jax.jit(f).lower(*args).compile()


@pytest.mark.fast
def test_matmul_flops_and_bytes_match_the_analytic_count():
    m, k, n = 64, 32, 16
    a, b = jnp.ones((m, k), jnp.float32), jnp.ones((k, n), jnp.float32)
    cost = program_cost(_compile(lambda x, y: x @ y, a, b))
    assert cost.flops == 2 * m * k * n
    assert cost.static_flops == 2 * m * k * n  # no loop: XLA's own count is right
    # One dot reads both operands and writes its result, float32.
    assert cost.bytes_accessed == 4 * (m * k + k * n + m * n)
    assert cost.unknown_loops == 0 and cost.note == ""


@pytest.mark.parametrize("length", [1, 7, 40])
def test_scan_flops_count_every_iteration(length: int):
    """c <- c @ a + b, ``length`` times: length x (2 d^3 + d^2) FLOPs (plus a loop counter)."""
    d = 32
    a, b = jnp.eye(d) * 0.5, jnp.ones((d, d))

    def f(x, a, b):
        return jax.lax.scan(lambda c, _: (c @ a + b, None), x, None, length=length)[0]

    cost = program_cost(_compile(f, jnp.ones((d, d)), a, b))
    per_step = 2 * d**3 + d**2
    assert cost.flops == pytest.approx(length * per_step, rel=1e-3)
    assert cost.unknown_loops == 0
    # XLA's cost_analysis() visits the loop body once whatever the trip count.
    assert cost.static_flops == pytest.approx(per_step, rel=1e-3)
    # Every iteration reads the two d x d dot operands and writes the result at least.
    assert cost.bytes_accessed >= length * 3 * d * d * 4


def test_nested_loops_multiply_their_trip_counts():
    d, outer, inner = 16, 3, 5
    a = jnp.full((d, d), 0.1)

    def f(x, a):
        def inner_loop(c, _):
            return jax.lax.scan(lambda z, _: (z @ a, None), c, None, length=inner)[0], None

        return jax.lax.scan(inner_loop, x, None, length=outer)[0]

    cost = program_cost(_compile(f, jnp.ones((d, d)), a))
    assert cost.flops == pytest.approx(outer * inner * 2 * d**3, rel=1e-3)


def test_data_dependent_loop_is_counted_once_and_flagged():
    d = 16
    a = jnp.full((d, d), 0.5)

    def f(x, a):
        return jax.lax.while_loop(lambda c: c.sum() < 1e6, lambda c: c @ a + 1.0, x)

    cost = program_cost(_compile(f, jnp.ones((d, d)), a))
    assert cost.unknown_loops == 1
    assert cost.flops >= 2 * d**3  # the body once: a lower bound


def test_failed_loop_analysis_gives_nan_not_an_undercount(monkeypatch):
    def broken(compiled):
        raise ValueError("unparsable")

    monkeypatch.setattr(xla_cost, "_loop_structure", broken)
    a = jnp.ones((8, 8))
    looped = _compile(lambda x: jax.lax.scan(lambda c, _: (c @ c, None), x, None, length=4)[0], a)
    cost = program_cost(looped)
    assert math.isnan(cost.flops) and math.isnan(cost.bytes_accessed)
    assert "loop-aware cost analysis failed: ValueError: unparsable" in cost.note
    plain = program_cost(_compile(lambda x: x @ x, a))  # no loop: XLA's count is exact
    assert plain.flops == 2 * 8**3 and plain.note == ""


def test_peak_memory_holds_at_least_the_arguments_and_results():
    x, y = jnp.ones((256, 128), jnp.float32), jnp.ones((128, 64), jnp.float32)
    cost = program_cost(_compile(lambda p, q: jnp.tanh(p @ q), x, y))
    arguments = x.nbytes + y.nbytes
    result = 256 * 64 * 4
    assert math.isfinite(cost.peak_bytes)
    assert cost.peak_bytes >= arguments + result


# --- steady-state timing ---------------------------------------------------------------------


class FakeClock:
    """perf_counter stand-in: every run of ``work`` advances it by ``step`` seconds."""

    def __init__(self, step: float):
        self.now, self.step, self.runs = 0.0, step, 0

    def perf_counter(self) -> float:
        return self.now

    def work(self):
        self.runs += 1
        self.now += self.step
        return jnp.zeros(3)


@pytest.mark.parametrize(
    "step,budget,max_repeats,expected",
    [
        (0.3, 1.0, 5, 4),  # 0.3, 0.6, 0.9 < 1.0 go on; 1.2 stops
        (0.01, 1.0, 5, 5),  # capped at max_repeats
        (0.01, 1.0, 3, 3),
        (1.5, 1.0, 5, 1),  # at least one repeat
        (0.01, 0.0, 5, 1),
    ],
)
def test_repeats_follow_the_budget(monkeypatch, step, budget, max_repeats, expected):
    clock = FakeClock(step)
    monkeypatch.setattr(timing, "time", types.SimpleNamespace(perf_counter=clock.perf_counter))
    rep = steady_state(clock.work, first_s=step, budget_s=budget, max_repeats=max_repeats)
    assert rep.count == expected == clock.runs == len(rep.times_s)
    assert rep.times_s == pytest.approx([step] * expected)
    assert rep.median_s == pytest.approx(step) and rep.first_s == step


def test_slow_warm_up_is_the_only_measurement():
    calls = []
    rep = steady_state(lambda: calls.append(1), first_s=3.0, slow_s=2.0)
    assert calls == [] and rep.count == 0
    assert rep.median_s == rep.min_s == rep.max_s == 3.0


def test_real_repeats_give_a_median_inside_their_range():
    x = jnp.ones((64, 64))
    f = jax.jit(lambda a: a @ a)
    jax.block_until_ready(f(x))
    rep = steady_state(lambda: f(x), first_s=0.0, budget_s=10.0, max_repeats=5)
    assert rep.count == 5
    assert all(t > 0 for t in rep.times_s)
    assert rep.min_s <= rep.median_s <= rep.max_s
    assert rep.median_s == pytest.approx(float(np.median(rep.times_s)))


def test_default_timing_is_the_result_producing_run(monkeypatch):
    """By default a program that took at least SHORT_S is not run again: its result-producing
    run is the measurement; with steady=True it gets the steady-state repeats."""
    clock = FakeClock(0.3)
    monkeypatch.setattr(timing, "time", types.SimpleNamespace(perf_counter=clock.perf_counter))
    rep = timing.time_program(clock.work, first_s=0.35)
    assert clock.runs == 0 and rep.count == 0
    assert rep.median_s == rep.min_s == rep.max_s == rep.first_s == 0.35
    rep = timing.time_program(clock.work, first_s=0.35, steady=True)
    assert rep.count == clock.runs == 2  # 0.3, then 0.6 >= REPEAT_BUDGET_S stops
    assert rep.median_s == pytest.approx(0.3) and rep.first_s == 0.35


def test_short_programs_are_repeated_within_a_short_budget(monkeypatch):
    """A program under SHORT_S is repeated while the repeats' total is under SHORT_S (at most
    MAX_REPEATS times): what timing adds stays about 2 x SHORT_S per program."""
    step = timing.SHORT_S / 3.5
    clock = FakeClock(step)
    monkeypatch.setattr(timing, "time", types.SimpleNamespace(perf_counter=clock.perf_counter))
    rep = timing.time_program(clock.work, first_s=2 * step)
    assert rep.count == clock.runs == 4  # 1, 2, 3 steps < SHORT_S go on; 4 stops
    assert rep.median_s == pytest.approx(step) and rep.first_s == 2 * step
    tiny = FakeClock(1e-6)
    monkeypatch.setattr(timing, "time", types.SimpleNamespace(perf_counter=tiny.perf_counter))
    assert timing.time_program(tiny.work, first_s=1e-6).count == timing.MAX_REPEATS


def test_bad_repeat_settings_raise():
    with pytest.raises(ValueError, match="max_repeats must be at least 1, got 0"):
        steady_state(lambda: None, 0.0, max_repeats=0)
    with pytest.raises(ValueError, match="must be >= 0"):
        steady_state(lambda: None, 0.0, budget_s=-1.0)


# --- device peaks ----------------------------------------------------------------------------

# The published peaks are checked against the chips' architecture, not re-typed: a GPU's float32
# peak is (CUDA cores) x (boost clock) x 2 (one fused multiply-add per core per cycle), a TPU's
# bfloat16 peak is (MXUs) x 128 x 128 x 2 x (clock). Core counts and clocks from the vendors'
# architecture whitepapers / product specifications (NVIDIA Hopper, Ampere, Ada and Volta
# whitepapers; Google's TPU v4 paper, Jouppi et al. 2023, and the Cloud TPU v5e page); the
# datasheets round the product to 2-3 significant figures, hence the 1.5% tolerance. Each row
# also names a device_kind string as CUDA / libtpu report it, so every table entry is reached.
ARCHITECTURE = [
    # (device_kind, cores (or MXU MACs), clock GHz, table name)
    ("NVIDIA H100 80GB HBM3", 132 * 128, 1.98, "NVIDIA H100 SXM"),
    ("NVIDIA H100 PCIe", 114 * 128, 1.755, "NVIDIA H100 PCIe"),
    ("NVIDIA H100 NVL", 132 * 128, 1.785, "NVIDIA H100 NVL"),
    ("NVIDIA H200", 132 * 128, 1.98, "NVIDIA H200 SXM"),
    ("NVIDIA H200 NVL", 132 * 128, 1.785, "NVIDIA H200 NVL"),
    ("NVIDIA A100-SXM4-40GB", 108 * 64, 1.41, "NVIDIA A100"),
    ("NVIDIA A100 80GB PCIe", 108 * 64, 1.41, "NVIDIA A100"),
    ("NVIDIA L4", 58 * 128, 2.04, "NVIDIA L4"),
    ("Tesla V100-SXM2-16GB", 80 * 64, 1.53, "NVIDIA V100 SXM2"),
    ("Tesla V100-PCIE-32GB", 80 * 64, 1.38, "NVIDIA V100 PCIe"),
    ("Tesla V100S-PCIE-32GB", 80 * 64, 1.601, "NVIDIA V100S PCIe"),
    ("TPU v4", 2 * 4 * 128 * 128, 1.05, "TPU v4"),  # 2 TensorCores x 4 MXUs of 128 x 128
    ("TPU v5 lite", 4 * 128 * 128, 1.5, "TPU v5e"),  # 1 TensorCore x 4 MXUs
]


@pytest.mark.parametrize("kind,cores,ghz,name", ARCHITECTURE)
@pytest.mark.fast
def test_published_peaks_match_the_architecture(kind: str, cores: int, ghz: float, name: str):
    peak = env.published_peak(kind)
    assert peak is not None and peak.kind == "published" and peak.basis.startswith(name + ":")
    assert peak.flops == pytest.approx(2 * cores * ghz * 1e9, rel=0.015)
    assert peak.source.startswith(("NVIDIA", "Google Cloud")) and "https://" in peak.source
    assert ("bfloat16" if kind.startswith("TPU") else "float32") in peak.basis


def test_every_published_peak_is_reached_and_well_formed():
    """No table entry is shadowed by an earlier, more general pattern (each is the first match
    for a device_kind above), and the names, sources and figures are well formed."""
    reached = {env.published_peak(kind).basis.split(":")[0] for kind, *_ in ARCHITECTURE}
    names = [row[1] for row in env.PUBLISHED_PEAKS]
    assert sorted(reached) == sorted(names) and len(set(names)) == len(names)
    for pattern, name, flops, basis, source in env.PUBLISHED_PEAKS:
        assert re.compile(pattern) and name and basis
        assert 1e12 < flops < 1e15 and source.count("https://") == 1


@pytest.mark.parametrize("kind", ["cpu", "NVIDIA L40S", "TPU v4 lite", "NVIDIA GeForce RTX 4090"])
def test_unlisted_devices_have_no_published_peak(kind: str):
    assert env.published_peak(kind) is None


def test_cpu_peak_is_measured_once_per_process(monkeypatch):
    calls = []
    monkeypatch.setattr(env, "matmul_peak_flops", lambda: calls.append(1) or 4.0e10)
    monkeypatch.setattr(compile_cache, "directory", lambda: None)
    env._measured_peak.cache_clear()
    try:
        first, second = env.device_peak(), env.device_peak()
    finally:
        env._measured_peak.cache_clear()
    assert calls == [1]
    assert first == second and first.flops == 4.0e10 and first.kind == "measured"
    assert f"{env.MATMUL_N}x{env.MATMUL_N} matmul" in first.basis


def test_cpu_peak_is_measured_once_per_cache_directory(monkeypatch, tmp_path):
    """A process with a compilation cache stores the measured peak there; the next process
    (here: the per-process memo cleared) reads it instead of measuring; another directory, or
    an unreadable file, measures again."""
    calls = []
    monkeypatch.setattr(env, "matmul_peak_flops", lambda: calls.append(1) or 4.0e10 * len(calls))
    directory = tmp_path / "a"
    monkeypatch.setattr(compile_cache, "directory", lambda: directory)
    directory.mkdir()
    try:
        env._measured_peak.cache_clear()
        first = env.device_peak()
        env._measured_peak.cache_clear()
        again = env.device_peak()
        assert calls == [1] and again == first and first.flops == 4.0e10
        (directory / env.PEAK_FILE).write_text("{not json")
        env._measured_peak.cache_clear()
        assert env.device_peak().flops == 8.0e10 and calls == [1, 1]
        directory = tmp_path / "b"
        directory.mkdir()
        env._measured_peak.cache_clear()
        assert env.device_peak().flops == 1.2e11 and len(calls) == 3
    finally:
        env._measured_peak.cache_clear()


def test_env_names_the_published_peak_on_a_known_gpu(monkeypatch):
    gpu = types.SimpleNamespace(id=0, platform="gpu", device_kind="NVIDIA H100 PCIe")
    monkeypatch.setattr(env.jax, "devices", lambda: [gpu])
    monkeypatch.setattr(env.jax, "default_backend", lambda: "gpu")
    monkeypatch.setattr(env, "matmul_peak_flops", lambda: 3.0e13)
    text = env.describe()
    assert "device 0: gpu NVIDIA H100 PCIe" in text
    assert (
        f"measured float32 matmul peak ({env.MATMUL_N}^3, best of {env.MATMUL_REPEATS}): "
        "30000.0 GFLOP/s" in text
    )
    assert "peak used for % of peak in results: 51000 GFLOP/s, NVIDIA H100 PCIe" in text
    assert env.device_peak(gpu).flops == 51e12


def test_measured_matmul_peak_is_a_positive_rate():
    assert 0 < env.matmul_peak_flops(n=128, repeats=2) < math.inf


# --- engine rows -----------------------------------------------------------------------------


def test_rows_carry_consistent_measurements():
    """An MLP grid on wine: every measurement column is present, finite where measured, and
    consistent; the fit's FLOPs cover the matmuls of every training step (which XLA's loop-once
    count misses by the number of steps)."""
    task = tasks.load("wine")
    steps, batch, hidden = 60, 64, 32
    spec = models.get(f"mlp?steps={steps}&batch_size={batch}&hidden={hidden}")
    rows, timing = run_grid(task, spec, (10, 30), (0, 1))
    cells = len(rows)
    frame = schema.validate(pd.DataFrame(rows))
    assert len(frame) == cells == 4
    n_test = len(task.y_test)
    for r in rows:
        assert r["fit_s_min"] <= r["fit_s"] <= r["fit_s_max"]
        assert r["predict_s_min"] <= r["predict_s"] <= r["predict_s_max"]
        assert r["fit_repeats"] in (0, 1, 2, 3, 4, 5) and r["predict_repeats"] in range(6)
        assert r["fit_s"] > 0 and r["predict_s"] > 0 and r["compile_s"] > 0
        assert r["predict_per_s"] * r["predict_s"] == pytest.approx(n_test)
        assert 0 < r["fit_flops"] < r["flops"] and r["bytes"] > 0
        assert r["flop_rate"] == pytest.approx(r["fit_flops"] / r["fit_s"])
        assert r["peak_fraction"] == pytest.approx(r["flop_rate"] / timing.device_peak["flops"])
        inputs = task.x_pool.nbytes + task.y_pool.nbytes
        assert r["peak_bytes"] >= inputs
    assert timing.fit_repeats == rows[0]["fit_repeats"] and timing.unknown_loops == 0
    # Matmuls of one step per cell: forward (D x H, H x C), weight gradients of both layers
    # and the input gradient of the second: 2 batch (2 D H + 3 H C).
    d, c = task.dim, task.num_classes
    matmuls = steps * 2 * batch * (2 * d * hidden + 3 * hidden * c)
    per_cell = rows[0]["fit_flops"]
    assert matmuls <= per_cell <= 2.5 * matmuls
    assert timing.static_flops < per_cell * cells / 10  # what the loop-once count would say


def test_run_cells_times_the_result_producing_run_unless_steady_state_is_asked():
    """A real grid: by default the fit and evaluate programs are repeated only when their
    result-producing run took under SHORT_S; with steady=True, whenever it took at most
    SLOW_S. Either way the results are those of the result-producing run: the same rows."""
    task = tasks.load("iris")
    spec = models.get("gnb")
    pairs = [(n, s) for n in (10, 30) for s in range(3)]
    default = engine.run_cells(task, spec, pairs, quality=False)
    steady = engine.run_cells(task, spec, pairs, quality=False, steady=True)
    for result, short_s in ((default, timing.SHORT_S), (steady, timing.SLOW_S)):
        t = result.timing
        for first, repeats in (
            (t.fit_first_s, t.fit_repeats),
            (t.predict_first_s, t.predict_repeats),
        ):
            below = first < short_s if short_s == timing.SHORT_S else first <= short_s
            assert (repeats >= 1) == below and repeats <= timing.MAX_REPEATS
        if t.fit_repeats == 0:
            assert t.fit_s == t.fit_first_s
    keep = ("n_train", "seed", "accuracy", "nll", "brier")
    assert [{k: r[k] for k in keep} for r in default.rows] == [
        {k: r[k] for k in keep} for r in steady.rows
    ]


def test_steady_state_flag_reaches_the_run_config():
    from gdbench import cli, runner, suites

    args = cli._parser().parse_args(["run", "--steady-state"])
    assert args.steady_state is True
    assert cli._parser().parse_args(["run"]).steady_state is False
    suite = suites.get("quick")
    config = runner.make_config(suite, ["iris"], ["gnb"], steady_state=True)
    assert config.steady_state and config.to_json()["steady_state"] is True
    assert not runner.make_config(suite, ["iris"], ["gnb"]).steady_state
