"""``python -m gdbench.benchmarks``: run the benchmarks, write a Markdown table and a JSON file.

    python -m gdbench.benchmarks [--quick] [--only ngjordan,suite,mlp,scaling]
                               [--out results/benchmarks/latest.md] [--repeats 3]

The Markdown file holds the machine, the results table (measured ratio, target, PASS/MISS) and
one detail table per benchmark; the JSON file next to it (same name, ``.json``) holds every raw
time, the per-cell accuracy comparison summaries and the machine (CPU model, cores, library
versions, device, load averages). ``--quick`` runs fewer seeds, cells and repeats (a smoke run
of every code path, not for citing). The persistent compilation cache is off in this process,
so every compile time is a real compilation.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import sys
import time
from pathlib import Path

from gdbench.benchmarks.common import Line, machine, markdown_table

BENCHMARKS = ("ngjordan", "suite", "mlp", "scaling")
DEFAULT_OUT = Path("results/benchmarks/latest.md")


def _run_one(name: str, quick: bool, repeats: int) -> dict:
    if name == "ngjordan":
        from gdbench.benchmarks import ngjordan

        return ngjordan.run(quick=quick, repeats=repeats, process_repeats=1 if quick else 2)
    if name == "suite":
        from gdbench.benchmarks import ngjordan

        return ngjordan.run_suite(quick=quick)
    if name == "mlp":
        from gdbench.benchmarks import mlp_torch

        return mlp_torch.run(quick=quick, repeats=repeats)
    if name == "scaling":
        from gdbench.benchmarks import scaling

        return scaling.run(quick=quick, repeats=max(2, repeats - 1))
    raise ValueError(f"unknown benchmark '{name}'; valid: {', '.join(BENCHMARKS)}")


TITLES = {
    "ngjordan": "1. Ng & Jordan grid vs a scikit-learn loop",
    "suite": "1b. The whole ngjordan suite vs its scikit-learn loop (whole processes)",
    "mlp": "2. MLP vs PyTorch (CPU)",
    "scaling": "3. Scaling of one grid with its number of cells",
}


def _jsonable(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Line):
        return _jsonable(value.to_json())
    if hasattr(value, "item") and callable(value.item):  # NumPy scalars
        return _jsonable(value.item())
    return value


def render(info: dict, lines: list[Line], details: dict[str, str], args) -> str:
    """The Markdown report: machine, results table, detail tables, how to read it."""
    m = info["machine"]
    v = m["versions"]
    out = [
        "# gdbench benchmarks",
        "",
        f"Run {info['started_utc']} ({info['elapsed_s']:.0f} s), command `{info['command']}`"
        + (" (**--quick: smoke run, not for citing**)" if args.quick else "")
        + ".",
        "",
        f"Machine: {m['cpu_model']}, {m['cores']} cores, {m.get('memory_gib', '?')} GiB; "
        f"JAX device {m['device']}; Python {m['python']}; jax {v['jax']}, jaxlib {v['jaxlib']}, "
        f"flax {v['flax']}, optax {v['optax']}, scikit-learn {v['scikit-learn']}, "
        f"torch {v['torch']}, numpy {v['numpy']}.",
        "",
        "Load average (1, 5, 15 min) at the start: "
        f"{info['load_start']}, at the end: {info['load_end']}; per benchmark in the JSON. "
        "Other jobs may share the machine: times are noisy. Both sides of a ratio run in "
        "the same script, in interleaved rounds (each round times both, one after the "
        "other), and a ratio marked so is the median of the rounds' ratios.",
        "",
        "Ratio = baseline time / gdbench time (higher: gdbench faster), or the measured "
        "fraction where the unit is %. PASS: ratio >= target.",
        "",
        markdown_table(lines),
    ]
    for name, text in details.items():
        out += ["", f"## {TITLES[name]}", "", text]
    out += [
        "",
        "## What is measured",
        "",
        "See the docstrings of `bench/benchmarks/ngjordan.py`, `mlp_torch.py`, `scaling.py` "
        "and `sklearn_loop.py`: what each side runs, what is timed, and how the baseline is "
        "configured.",
        "",
    ]
    return "\n".join(out)


def rerender_table(out: Path) -> None:
    """Write the results table of the report ``out`` again from the lines stored in its JSON,
    with this version's formatting (the stored measurements, nothing run again)."""
    payload = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    fields = {f.name for f in dataclasses.fields(Line)}
    lines = [Line(**{k: v for k, v in line.items() if k in fields}) for line in payload["lines"]]
    text = out.read_text(encoding="utf-8")
    start = text.index("| benchmark | measurement |")
    end = text.find("\n\n", start)
    end = len(text) if end < 0 else end
    out.write_text(text[:start] + markdown_table(lines).rstrip("\n") + text[end:], encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gdbench.benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer seeds and repeats")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="benchmarks to run")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="Markdown file to write")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (default 3)")
    parser.add_argument(
        "--rerender",
        action="store_true",
        help="only write --out's results table again from its JSON (no benchmark runs)",
    )
    args = parser.parse_args(argv)
    if args.rerender:
        rerender_table(args.out)
        print(f"[bench] wrote the results table of {args.out} from its JSON", file=sys.stderr)
        return 0
    names = [n for n in args.only.split(",") if n]
    for n in names:
        if n not in BENCHMARKS:
            parser.error(f"unknown benchmark '{n}'; valid: {', '.join(BENCHMARKS)}")
    repeats = args.repeats if args.repeats is not None else (2 if args.quick else 3)
    if repeats < 1:
        parser.error(f"--repeats must be at least 1, got {repeats}")
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        parser.error(f"cannot create the directory of --out '{args.out}': {e.strerror or e}")

    from gdbench import compile_cache

    compile_cache.enable(None)  # real compilations in this process
    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    t0 = time.perf_counter()
    info = {"started_utc": started, "machine": machine()}
    info["load_start"] = info["machine"]["load_average"]
    lines: list[Line] = []
    details, raw = {}, {}
    for name in names:
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        t = time.perf_counter()
        result = _run_one(name, args.quick, repeats)
        print(f"[bench] {name} done in {time.perf_counter() - t:.0f} s", file=sys.stderr)
        lines += result["lines"]
        details[name] = result["detail"]
        raw[name] = {**result["raw"], "seconds": time.perf_counter() - t}
    end = machine()
    info.update(
        {
            "elapsed_s": time.perf_counter() - t0,
            "load_end": end["load_average"],
            "command": "python -m gdbench.benchmarks " + " ".join(argv or sys.argv[1:]),
            "quick": args.quick,
            "repeats": repeats,
        }
    )
    text = render(info, lines, details, args)
    args.out.write_text(text, encoding="utf-8")
    payload = {**info, "lines": lines, "raw": raw}
    args.out.with_suffix(".json").write_text(
        json.dumps(_jsonable(payload), indent=1), encoding="utf-8"
    )
    print(markdown_table(lines))
    print(f"[bench] wrote {args.out} and {args.out.with_suffix('.json')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
