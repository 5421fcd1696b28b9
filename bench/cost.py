"""XLA's static cost of a compiled program: FLOPs and bytes accessed with every while-loop body
counted as often as the loop runs (XLA's own ``cost_analysis()`` counts a loop body once, which
undercounts a ``lax.scan`` of 400 steps 400-fold), and peak memory from XLA's memory analysis.

The loop-aware count parses the optimized HLO text and re-analyses each loop body as a module
of its own, through JAX's private ``jaxlib._hlo`` and ``jax._src.lib._jax`` bindings: this module
is the only place that uses them, and ``program_cost`` reports NaN with a note if they fail.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import numpy as np

from gdbench.fit import LBFGS, NEWTON_SCOPE, NEWTON_STEPS


@dataclasses.dataclass(frozen=True)
class ProgramCost:
    """XLA's static cost of one compiled program.

    ``flops`` and ``bytes_accessed``: XLA's cost analysis (HloCostAnalysis) of the optimized
    program, every while-loop body counted as often as its known trip count (NaN when that
    cannot be computed). ``static_flops``: XLA's ``cost_analysis()`` as reported, loop bodies
    counted once. ``unknown_loops``: while loops without a known trip count, counted once
    each (``flops`` is then a lower bound). ``peak_bytes``: XLA's memory analysis, the peak
    of live buffers (arguments, outputs and temporaries), bytes; NaN if not reported.
    ``note``: why a value is NaN, else "".
    """

    flops: float
    bytes_accessed: float
    peak_bytes: float
    static_flops: float
    unknown_loops: int = 0
    note: str = ""


_COMPUTATION = re.compile(r"^(ENTRY\s+)?%(\S+)\s+\(.*\{\s*$")
_WHILE_BODY = re.compile(r"\swhile\(.*?\bbody=%([\w.\-]+)")
_TRIP_COUNT = re.compile(r'"known_trip_count":\{"n":"(\d+)"\}')
#: A while loop of the ``i``-th fit stage's Newton solve (``gdbench.fit.NEWTON_SCOPE``): its
#: trip count is data-dependent (a convergence stop); the op name ends with the loop's own
#: "/while" inside the stage's scope (a loop nested deeper would show more components), or
#: inside a branch of the solve's row-bucket switch (``gdbench.fit._on_row_bucket``); the
#: L-BFGS loop that precedes it, inside the scope's ``LBFGS`` part.
_NEWTON_LOOP = re.compile(
    r'op_name="[^"]*\b'
    + re.escape(NEWTON_SCOPE)
    + r"(\d+)\)?(?:/cond/branch_\d+_fun)?("
    + re.escape(LBFGS)
    + r')?/while"'
)
#: An instruction that runs one of several computations (``lax.cond`` / ``lax.switch``).
_BRANCHES = re.compile(r"\b(?:branch_computations|true_computation|false_computation)=")
#: Attributes of an HLO instruction that name the computations it calls.
_CALLED = re.compile(
    r"\b(?:calls|to_apply|body|condition|branch_computations|true_computation"
    r"|false_computation|called_computations)=(\{[^}]*\}|%[\w.\-]+)"
)
_NAME = re.compile(r"%([\w.\-]+)")


def _called(line: str) -> list[str]:
    """Names of the computations an HLO instruction line calls."""
    return [name for group in _CALLED.findall(line) for name in _NAME.findall(group)]


def _static_cost(compiled) -> dict:
    try:
        cost = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - not every backend reports costs
        return {}
    if isinstance(cost, list | tuple):
        cost = cost[0] if cost else {}
    return dict(cost or {})


def _peak_bytes(compiled) -> float:
    """Peak bytes of live buffers from XLA's memory analysis; NaN if the backend has none.

    ``peak_memory_in_bytes`` (XLA's heap simulation over the buffer assignment) when reported,
    else argument + output + temporary - aliased bytes (all buffers live at once)."""
    try:
        stats = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - not every backend reports memory
        return math.nan
    if stats is None:
        return math.nan
    peak = getattr(stats, "peak_memory_in_bytes", 0) or 0
    if peak > 0:
        return float(peak)
    parts = ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes")
    total = sum(getattr(stats, p, 0) or 0 for p in parts) - (stats.alias_size_in_bytes or 0)
    return float(total) if total > 0 else math.nan


def _module_text(compiled, metadata: bool = False) -> tuple[str, Any]:
    """Optimized HLO text of the program (constants in full; op metadata if ``metadata``) and
    its client."""
    from jaxlib import _hlo

    options = _hlo.HloPrintOptions()
    options.print_metadata = metadata
    options.print_large_constants = True
    executable = compiled.runtime_executable()
    return executable.hlo_modules()[0].to_string(options), executable.client


@dataclasses.dataclass
class _Parsed:
    """One compiled program's optimized module, split for ``_loop_structure``: parsed once
    per program (``_parsed``), however many grids share it with their own step counts."""

    head: str
    entry: str
    comps: dict[str, list[str]]
    client: Any
    #: per computation, in order: ``("while", body, trip count or None)`` or ``("calls",
    #: called computations, whether one branch of them runs)``
    ops: dict[str, list[tuple]]
    #: loop body -> its key in ``newton_steps`` (from the ops' metadata)
    loop_keys: dict[str, int | str]
    #: per computation, every computation it calls (a module of it must hold them all)
    calls: dict[str, set[str]]
    #: XLA's cost of a computation as a module's entry, its loops counted once
    once: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)


#: ``_parsed``'s memo: id(compiled) -> (compiled, parsed); the compiled program is held so its
#: id is not reused. Bounded: the oldest entries go first.
_PARSED: dict[int, tuple[Any, _Parsed]] = {}
_PARSED_MAX = 64


def _parsed(compiled) -> _Parsed:
    """``compiled``'s module split into computations, memoized: printing, parsing and
    analysing a ten-class ``logreg`` fit program took about 0.4 s, and the ``ngjordan`` suite
    asked 72 times for 36 grids that share far fewer programs."""
    hit = _PARSED.get(id(compiled))
    if hit is not None and hit[0] is compiled:
        return hit[1]
    text, client = _module_text(compiled)
    lines = text.splitlines()
    loop_keys: dict[str, int | str] = {}
    if any(" while(" in line and not _TRIP_COUNT.search(line) for line in lines):
        for line in _module_text(compiled, metadata=True)[0].splitlines():
            body, stage = _WHILE_BODY.search(line), _NEWTON_LOOP.search(line)
            if body and stage:
                loop_keys[body.group(1)] = _loop_key("".join(stage.groups("")))
    comps: dict[str, list[str]] = {}
    entry, current = None, None
    for line in lines[1:]:
        if current is None:
            m = _COMPUTATION.match(line)
            if m:
                current = m.group(2)
                comps[current] = [line]
                entry = current if m.group(1) else entry
            continue
        comps[current].append(line)
        if line == "}":
            current = None
    if entry is None:
        raise ValueError("no ENTRY computation in the HLO module text")
    ops: dict[str, list[tuple]] = {}
    for name, body in comps.items():
        ops[name] = []
        for line in body[1:]:
            m = _WHILE_BODY.search(line)
            if m is not None:
                trip = _TRIP_COUNT.search(line)
                ops[name].append(("while", m.group(1), int(trip.group(1)) if trip else None))
                continue
            refs = sorted({r for r in _called(line) if r in comps and r != name})
            if refs:
                ops[name].append(("calls", refs, bool(_BRANCHES.search(line))))
    calls = {
        name: {r for line in body[1:] for r in _called(line) if r in comps}
        for name, body in comps.items()
    }
    head = lines[0].split(",")[0]  # "HloModule <name>": layouts and schedule belong to entry
    parsed = _Parsed(head, entry, comps, client, ops, loop_keys, calls)
    while len(_PARSED) >= _PARSED_MAX:
        del _PARSED[next(iter(_PARSED))]
    _PARSED[id(compiled)] = (compiled, parsed)
    return parsed


def _loop_structure(compiled) -> tuple[str, dict, dict, dict]:
    """What the loop-aware count needs of a compiled program: ``(entry, ops, loop_keys,
    once)``, JSON-able (``_Parsed``'s fields; ``once``: XLA's cost of the entry and of every
    loop body as a module's entry, its own loops counted once). The expensive part of
    ``program_cost``: the module printed, parsed, and each loop body re-analysed."""
    from jax._src.lib import _jax
    from jaxlib import _hlo

    parsed = _parsed(compiled)
    comps, calls = parsed.comps, parsed.calls

    def reachable(root: str) -> list[str]:
        seen, stack = [], [root]
        while stack:
            name = stack.pop()
            if name not in seen:
                seen.append(name)
                stack.extend(sorted(calls[name] - {name}))
        return seen

    def cost_once(root: str) -> tuple[float, float]:
        """XLA's cost of computation ``root`` as a module's entry (its loops counted once)."""
        if root not in parsed.once:
            parts = [parsed.head, ""]
            for name in reversed(reachable(root)):
                body = comps[name]
                first = re.sub(r"^ENTRY\s+", "", body[0])
                parts += [("ENTRY " if name == root else "") + first, *body[1:], ""]
            module = _hlo.hlo_module_from_text("\n".join(parts))
            cost = _jax.hlo_module_cost_analysis(parsed.client, module)
            parsed.once[root] = (
                float(cost.get("flops", 0.0)),
                float(cost.get("bytes accessed", 0.0)),
            )
        return parsed.once[root]

    # Every loop body the count visits, whatever the step counts: one pass computes them all.
    once: dict[str, tuple[float, float]] = {}

    def record(root: str) -> tuple[float, float]:
        once[root] = cost_once(root)
        return once[root]

    _counted(parsed.entry, parsed.ops, parsed.loop_keys, record, {})
    ops = {name: [list(op) for op in body] for name, body in parsed.ops.items()}
    return parsed.entry, ops, dict(parsed.loop_keys), {k: list(v) for k, v in once.items()}


def _counted(entry: str, ops: dict, loop_keys: dict, once, newton_steps: dict):
    """(FLOPs, bytes accessed, loops without known trip count) of the program whose loop
    structure is ``ops`` / ``loop_keys`` (``_Parsed``), ``once(root)`` giving XLA's cost of a
    computation with its loops counted once.

    XLA's HloCostAnalysis visits a while loop's body once. Here the cost of a loop body (itself
    a module with the body as entry) is added (trip count - 1) more times, recursively for
    nested loops. The trip count is the ``known_trip_count`` XLA's loop analysis annotates
    (every ``lax.scan`` has one), or for the convergence loop of fit stage ``i``'s Newton solve
    ``newton_steps[i]``: the steps its cells took, on average (``newton_step_counts``). Other
    loops count once (a lower bound). Of a conditional's branches the costliest counts, as in
    XLA's own analysis of one.
    """
    extra_memo: dict[str, tuple[float, float, int]] = {}

    def extra(name: str) -> tuple[float, float, int]:
        """Cost of ``name`` with loops run their trip counts, minus its loop-once cost."""
        if name in extra_memo:
            return extra_memo[name]
        flops, nbytes, unknown = 0.0, 0.0, 0
        for op in ops[name]:
            if op[0] == "calls":
                costs = [extra(ref) for ref in op[1]]
                if op[2] and costs:
                    # One branch runs: the costliest, as XLA counts a conditional.
                    costs = [max(costs)]
                for f, b, u in costs:
                    flops, nbytes, unknown = flops + f, nbytes + b, unknown + u
                continue
            body, trip = op[1], op[2]
            key = loop_keys.get(body)
            if trip is not None:
                n = trip
            elif key is not None and key in newton_steps:
                n = newton_steps[key]
            else:
                n, unknown = 1, unknown + 1
            once_f, once_b = once(body)
            f, b, u = extra(body)
            flops += n * (once_f + f) - once_f
            nbytes += n * (once_b + b) - once_b
            unknown += u
        extra_memo[name] = (flops, nbytes, unknown)
        return extra_memo[name]

    once_f, once_b = once(entry)
    f, b, unknown = extra(entry)
    return once_f + f, once_b + b, unknown


@dataclasses.dataclass(frozen=True)
class CostModel:
    """What ``program_cost`` reads of a compiled program, apart from the run's step counts:
    XLA's reported cost, the peak memory and the loop structure with each loop body's cost
    (``_loop_structure``). JSON-able (``to_json``), so that ``gdbench.compile_cache`` keeps it
    next to the program and a warm run does not print, parse and re-analyse the program: that
    took 0.3 to 0.4 s of a warm ``breast_cancer`` process (18 programs, 2-core CPU).

    ``entry`` is "" when the loop-aware analysis failed (``note`` says why): ``cost`` then
    gives NaN for a program with loops (``has_loops``), XLA's exact count for one without."""

    static_flops: float
    static_bytes: float
    peak_bytes: float
    has_loops: bool
    entry: str = ""
    ops: dict = dataclasses.field(default_factory=dict)
    loop_keys: dict = dataclasses.field(default_factory=dict)
    once: dict = dataclasses.field(default_factory=dict)
    note: str = ""

    def cost(self, newton_steps: dict[int | str, float] | None = None) -> ProgramCost:
        """The program's ``ProgramCost`` with its Newton and L-BFGS loops counted by
        ``newton_steps`` (``newton_step_counts``; see ``program_cost``)."""
        static_flops, peak = self.static_flops, self.peak_bytes
        if not self.entry:
            if self.has_loops:
                return ProgramCost(math.nan, math.nan, peak, static_flops, 0, self.note)
            return ProgramCost(static_flops, self.static_bytes, peak, static_flops, 0, "")
        once = lambda root: tuple(self.once[root])  # noqa: E731
        steps = newton_steps or {}
        flops, nbytes, unknown = _counted(self.entry, self.ops, self.loop_keys, once, steps)
        return ProgramCost(flops, nbytes, peak, static_flops, unknown)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> CostModel:
        """The model ``to_json`` wrote (``TypeError`` / ``KeyError`` for anything else)."""
        return cls(**data)


def cost_model(compiled) -> CostModel:
    """The ``CostModel`` of a compiled program (``jax.stages.Compiled``)."""
    static = _static_cost(compiled)
    static_flops = float(static.get("flops", math.nan)) if static else math.nan
    static_bytes = float(static.get("bytes accessed", math.nan)) if static else math.nan
    peak = _peak_bytes(compiled)
    try:
        entry, ops, loop_keys, once = _loop_structure(compiled)
    except Exception as error:  # noqa: BLE001 - an unparsable module: report, do not crash
        note = f"loop-aware cost analysis failed: {type(error).__name__}: {error}"[:300]
        try:
            has_loops = " while(" in _module_text(compiled)[0]
        except Exception:  # noqa: BLE001
            has_loops = True
        return CostModel(static_flops, static_bytes, peak, has_loops, note=note)
    return CostModel(static_flops, static_bytes, peak, True, entry, ops, loop_keys, once)


def program_cost(compiled, newton_steps: dict[int | str, float] | None = None) -> ProgramCost:
    """FLOPs, bytes accessed and peak memory of a compiled program (``jax.stages.Compiled``).

    See ``ProgramCost``; ``newton_steps``: the Newton stages' mean steps taken, for a fit
    program (``newton_step_counts``). A program without while loops gets XLA's
    ``cost_analysis()`` numbers directly; if the loop-aware analysis fails for a program with
    loops, its FLOPs and bytes are NaN (with the reason in ``note``) rather than the
    loop-once undercount. ``gdbench.compile_cache.cost_model`` gives the same from the
    compilation cache."""
    return cost_model(compiled).cost(newton_steps)


def scaled(cost: ProgramCost, factor: float) -> ProgramCost:
    """``cost`` with its FLOPs and bytes multiplied by ``factor`` (peak memory unchanged)."""
    if factor == 1:
        return cost
    return dataclasses.replace(
        cost,
        flops=cost.flops * factor,
        bytes_accessed=cost.bytes_accessed * factor,
        static_flops=cost.static_flops * factor,
    )


def summed(first: ProgramCost, second: ProgramCost) -> ProgramCost:
    """The cost of running two programs one after the other: FLOPs, bytes and unknown loops
    added, the larger peak memory (each program's buffers are freed after it), notes joined."""
    return ProgramCost(
        flops=first.flops + second.flops,
        bytes_accessed=first.bytes_accessed + second.bytes_accessed,
        peak_bytes=max(first.peak_bytes, second.peak_bytes),
        static_flops=first.static_flops + second.static_flops,
        unknown_loops=first.unknown_loops + second.unknown_loops,
        note="; ".join(n for n in (first.note, second.note) if n),
    )


def _loop_key(suffix: str) -> int | str:
    """The key of a solver loop in ``newton_steps``: fit stage ``i``'s Newton loop is ``i``,
    the L-BFGS loop before it ``f"{i}{gdbench.fit.LBFGS}"``."""
    return int(suffix) if suffix.isdigit() else suffix


def newton_step_counts(fitted, count: int) -> dict[int | str, float]:
    """Mean Newton steps taken per fit stage over the grid's ``count`` cells (the fit
    program's ``gdbench.fit.NEWTON_STEPS`` traces; padding cells after them left out), and
    the mean L-BFGS iterations before them (key ``f"{i}{gdbench.fit.LBFGS}"``)."""
    return {
        _loop_key(name[len(NEWTON_STEPS) :]): float(np.mean(np.asarray(value)[:count]))
        for name, value in fitted[4].items()
        if name.startswith(NEWTON_STEPS)
    }
