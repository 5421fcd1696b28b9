"""The compilation cache: where it lives, that a second process loads its programs (JAX's
layer, and the programs layer without tracing them), what the programs' keys depend on, and
that an unreadable entry is compiled again."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gdbench import compile_cache

_PROGRAM = textwrap.dedent(
    """
    import sys
    import jax, jax.numpy as jnp
    from gdbench import compile_cache
    compile_cache.enable(sys.argv[1])
    f = jax.jit(lambda x: jnp.tanh(x @ x.T).sum())
    print(float(f.lower(jnp.ones((8, 8))).compile()(jnp.ones((8, 8)))))
    print(*compile_cache.counts())
    """
)


def _run(cache_dir: Path) -> tuple[float, int, int]:
    out = subprocess.run(
        [sys.executable, "-c", _PROGRAM, str(cache_dir)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    ).stdout.split()
    return float(out[0]), int(out[1]), int(out[2])


def test_second_process_loads_the_program_from_the_cache(tmp_path):
    value1, hits1, asked1 = _run(tmp_path / "xla")
    # jnp.ones is a program too: count every program, and expect all of them back.
    assert hits1 == 0 and asked1 >= 1
    assert any((tmp_path / "xla").iterdir()), "the first process wrote nothing to the cache"
    value2, hits2, asked2 = _run(tmp_path / "xla")
    assert hits2 == asked2 == asked1
    assert value2 == value1


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"GDBENCH_COMPILE_CACHE": "/data/xla"}, Path("/data/xla")),
        ({"GDBENCH_COMPILE_CACHE": "off"}, None),
        ({"GDBENCH_COMPILE_CACHE": "", "XDG_CACHE_HOME": "/xdg"}, Path("/xdg/gdbench/xla")),
    ],
)
def test_default_dir_follows_the_environment(monkeypatch, env, expected):
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert compile_cache.default_dir() == expected


def test_default_dir_without_environment_is_under_home(monkeypatch, tmp_path):
    monkeypatch.delenv("GDBENCH_COMPILE_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert compile_cache.default_dir() == tmp_path / ".cache" / "gdbench" / "xla"


# One small grid with every kind of program: fit and evaluate, sampling and scoring (sample
# quality), robustness; logreg's Newton solver calls LAPACK (Cholesky), which a program loaded
# without lowering must find set up. Prints the rows' numbers, the grid's cached programs and
# the names of the functions JAX traced.
_GRID = textwrap.dedent(
    """
    import json, sys
    import jax
    traced = []

    def listen(event, _seconds, **kw):
        if event.endswith("jaxpr_trace_duration"):
            traced.append(kw.get("fun_name"))

    jax.monitoring.register_event_duration_secs_listener(listen)
    from gdbench import compile_cache, engine
    from gdbench.models import registry
    from gdbench.tasks import registry as tasks
    compile_cache.enable(sys.argv[1])
    cols = ["accuracy", "nll", "log_lik", "fd", "acc_miss25", "flops", "bytes", "peak_bytes"]
    rows = []
    for model in ("logreg", "gnb"):
        result = engine.run_cells(
            tasks.load("digits_2v3"), registry.get(model), [(20, 0), (40, 1)], robustness=True
        )
        rows += [[r[c] for c in cols] for r in result.rows]
        rows.append(result.timing.cached_programs)
    print(json.dumps({"rows": rows, "traced": traced}))
    """
)
_GRID_PROGRAMS = (
    "fit_grid",
    "eval_grid",
    "metrics_grid",
    "sample_grid",
    "_score_grid",
    "robustness_grid",
)


def _run_grid(cache_dir: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _GRID, str(cache_dir)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _entries(cache: Path, suffix: str) -> list[Path]:
    return sorted(p for p in (cache / compile_cache.PROGRAMS).iterdir() if p.name.endswith(suffix))


def test_grid_programs_load_without_tracing_and_give_the_same_numbers(tmp_path):
    cache = tmp_path / "xla"
    first = _run_grid(cache)
    programs = _entries(cache, ".xla")
    # logreg: fit, predict, metrics, robustness; gnb: those but the metrics (shared by the
    # task's models), sampling, scoring.
    assert len(programs) == 9
    # The cost models of the grids' fit, predict and metrics programs (``cost_model``): the
    # third process reads them, and reports the same FLOPs, bytes and peak memory (below).
    assert len(_entries(cache, compile_cache.COST_SUFFIX)) == 5
    assert set(_GRID_PROGRAMS) <= set(first["traced"])
    assert first["rows"][2] == first["rows"][5] == 0  # nothing cached in the first process
    # JAX's layer holds the small programs but not the grids' (compiled with it bypassed),
    # so a process that finds only JAX's layer compiles them afresh and stores them again:
    # an executable JAX loaded from its own cache does not serialize completely on CPU.
    shutil.rmtree(cache / compile_cache.PROGRAMS)
    second = _run_grid(cache)
    assert _entries(cache, ".xla") == programs
    third = _run_grid(cache)
    assert not set(_GRID_PROGRAMS) & set(third["traced"]), third["traced"]
    assert third["rows"][2] == third["rows"][5] == 2  # fit and evaluate of each grid
    # Bit-identical metrics and the same cost analysis (FLOPs, bytes, peak memory).
    assert second["rows"] == first["rows"]
    assert third["rows"][:2] == first["rows"][:2] and third["rows"][3:5] == first["rows"][3:5]


def _double(x):
    return jnp.tanh(x) * 2.0


@pytest.mark.fast
def test_program_key_follows_what_decides_the_program(monkeypatch):
    x = jnp.ones((3, 4))
    key = compile_cache.program_key("fit", {"model": "mlp"}, (x,))
    assert key == compile_cache.program_key("fit", {"model": "mlp"}, (jnp.zeros((3, 4)),))
    others = [
        compile_cache.program_key("evaluate", {"model": "mlp"}, (x,)),
        compile_cache.program_key("fit", {"model": "vae"}, (x,)),
        compile_cache.program_key("fit", {"model": "mlp"}, (jnp.ones((3, 5)),)),
        compile_cache.program_key("fit", {"model": "mlp"}, (x.astype(jnp.bfloat16),)),
        compile_cache.program_key("fit", {"model": "mlp"}, ((x,),)),
        compile_cache.program_key("fit", {"model": "mlp"}, (np.ones((3, 4), np.float32),)),
    ]
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=true")
    others.append(compile_cache.program_key("fit", {"model": "mlp"}, (x,)))
    monkeypatch.delenv("XLA_FLAGS")
    with jax.default_matmul_precision("highest"):
        others.append(compile_cache.program_key("fit", {"model": "mlp"}, (x,)))
    monkeypatch.setattr(compile_cache, "host_cpu", lambda: "another CPU | avx512f")
    others.append(compile_cache.program_key("fit", {"model": "mlp"}, (x,)))
    assert len({key, *others}) == len(others) + 1


def test_unreadable_program_is_compiled_again(tmp_path):
    before = compile_cache.directory()
    compile_cache.enable(tmp_path / "xla")
    try:
        x = jnp.arange(6.0)
        compiled, cached = compile_cache.compile_program(_double, (x,), "double", {})
        assert not cached
        (entry,) = (tmp_path / "xla" / compile_cache.PROGRAMS).iterdir()
        os.utime(entry, (1e9, 1e9))
        assert compile_cache.compile_program(_double, (x,), "double", {})[0] is compiled  # memo
        compile_cache.clear_memo()  # from here on, the disk layer
        loaded, cached = compile_cache.compile_program(_double, (x,), "double", {})
        assert cached
        assert entry.stat().st_mtime > 1e9  # a load marks the entry as recently used
        np.testing.assert_array_equal(loaded(x), compiled(x))
        entry.write_bytes(zlib.compress(b"not a program"))
        compile_cache.clear_memo()
        with pytest.warns(UserWarning, match="unreadable"):
            again, cached = compile_cache.compile_program(_double, (x,), "double", {})
        assert not cached
        np.testing.assert_array_equal(again(x), compiled(x))
        compile_cache.clear_memo()
        assert compile_cache.compile_program(_double, (x,), "double", {})[1]  # rewritten
    finally:
        compile_cache.enable(before)


def _squares(x):
    return jax.lax.scan(lambda c, _: (c @ c, None), x, None, length=5)[0]


def test_cost_model_is_kept_with_its_program(tmp_path, monkeypatch):
    """A program's cost model is written next to it, read back by a later process (here: after
    the memo is cleared, with the analysis made to fail), and analysed again when unreadable."""
    from gdbench.cost import program_cost

    before = compile_cache.directory()
    compile_cache.enable(tmp_path / "xla")
    try:
        x = jnp.eye(16)
        compiled, _ = compile_cache.compile_program(_squares, (x,), "squares", {})
        fresh = program_cost(compiled)
        assert fresh.flops == pytest.approx(5 * 2 * 16**3, rel=0.05)  # the loop's five steps
        assert compile_cache.cost_model(compiled).cost() == fresh
        (entry,) = _entries(tmp_path / "xla", compile_cache.COST_SUFFIX)
        assert entry.stat().st_mode & 0o777 == 0o600
        compile_cache.clear_memo()
        loaded, cached = compile_cache.compile_program(_squares, (x,), "squares", {})
        assert cached

        def fails(_compiled):
            raise AssertionError("analysed again")

        monkeypatch.setattr(compile_cache, "analyse", fails)
        assert compile_cache.cost_model(loaded).cost() == fresh  # read from the entry
        monkeypatch.undo()
        entry.write_text("{not json")
        compile_cache.clear_memo()
        loaded, _ = compile_cache.compile_program(_squares, (x,), "squares", {})
        assert compile_cache.cost_model(loaded).cost() == fresh  # analysed, and rewritten
        assert json.loads(entry.read_text())["entry"]
    finally:
        compile_cache.enable(before)


def test_evict_keeps_the_most_recently_used_programs_within_the_bound(tmp_path):
    for i, name in enumerate(["old", "middle", "new"]):
        entry = tmp_path / f"{name}.xla"
        entry.write_bytes(b"x" * 100)
        os.utime(entry, (1e9 + i, 1e9 + i))
    (tmp_path / f"old{compile_cache.COST_SUFFIX}").write_bytes(b"x" * 10)
    os.utime(tmp_path / f"old{compile_cache.COST_SUFFIX}", (1e9, 1e9))
    (tmp_path / "killed-writer.tmp").write_bytes(b"x")
    os.utime(tmp_path / "killed-writer.tmp", (1e9, 1e9))
    (tmp_path / "writing-now.tmp").write_bytes(b"x")
    deleted = compile_cache.evict(tmp_path, max_bytes=250)
    assert sorted(p.name for p in deleted) == ["killed-writer.tmp", "old.cost.json", "old.xla"]
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["middle.xla", "new.xla", "writing-now.tmp"]
    assert compile_cache.evict(tmp_path, max_bytes=250) == []
    assert [p.name for p in compile_cache.evict(tmp_path, max_bytes=0)] == ["middle.xla", "new.xla"]


def _toy_task(name: str, seed: int, preprocess: str = "standardize"):
    from gdbench.tasks.base import Task

    rng = np.random.default_rng(seed)
    y = np.tile(np.arange(2), 60)
    x = rng.normal(size=(120, 4)) + (1.0 + seed) * y[:, None]
    return Task.from_arrays(name, x[:80], y[:80], x[80:], y[80:], preprocess=preprocess)


def test_tasks_of_the_same_shapes_share_a_grids_programs():
    """Two tasks with the same shapes and preprocessing but other data run the same fit and
    evaluate programs: the second grid takes them from the process's memo, and its rows are
    those of a fresh compilation (the programs read the data only through their arguments)."""
    from gdbench import engine
    from gdbench.models import registry

    before = compile_cache.directory()
    compile_cache.enable(None)
    try:
        spec = registry.get("logreg")
        pairs = [(n, s) for n in (10, 40) for s in range(3)]
        first = engine.run_cells(_toy_task("toy_a", 0), spec, pairs, quality=False)
        shared = engine.run_cells(_toy_task("toy_b", 1), spec, pairs, quality=False)
        assert first.timing.cached_programs == 0 and shared.timing.cached_programs == 2
        compile_cache.clear_memo()
        fresh = engine.run_cells(_toy_task("toy_b", 1), spec, pairs, quality=False)
        assert fresh.timing.cached_programs == 0
        for a, b in zip(shared.rows, fresh.rows, strict=True):
            assert a["task"] == b["task"] == "toy_b"
            assert a["accuracy"] == b["accuracy"] and a["nll"] == b["nll"]
        assert [r["accuracy"] for r in shared.rows] != [r["accuracy"] for r in first.rows]
        other = engine.run_cells(_toy_task("toy_c", 1, "none"), spec, pairs, quality=False)
        assert other.timing.cached_programs == 0  # another preprocessing: another program
    finally:
        compile_cache.enable(before)


def test_specs_differing_in_a_traced_hyperparameter_share_a_program_that_uses_it():
    """``logreg`` and ``logreg?C=0.01`` run one compiled program (``C`` is an argument,
    ``Model.traced_hyperparameters``), and the shared program fits the second spec's ``C``: its
    rows equal a fresh compilation's and differ from the first spec's."""
    from gdbench import engine
    from gdbench.models import registry

    before = compile_cache.directory()
    compile_cache.enable(None)
    try:
        task = _toy_task("toy_c", 0)
        pairs = [(n, s) for n in (10, 40) for s in range(3)]
        weak = engine.run_cells(task, registry.get("logreg"), pairs, quality=False)
        strong_spec = registry.get("logreg?C=0.01")
        shared = engine.run_cells(task, strong_spec, pairs, quality=False)
        assert weak.timing.cached_programs == 0 and shared.timing.cached_programs == 2
        compile_cache.clear_memo()
        fresh = engine.run_cells(task, strong_spec, pairs, quality=False)
        assert fresh.timing.cached_programs == 0
        for a, b, c in zip(shared.rows, fresh.rows, weak.rows, strict=True):
            assert a["model"] == b["model"] == "logreg?C=0.01"
            np.testing.assert_allclose(a["nll"], b["nll"], rtol=1e-6)
            assert abs(a["nll"] - c["nll"]) > 1e-3  # a stronger penalty: another fit
    finally:
        compile_cache.enable(before)
