"""The result-row schema: one long-format row per (task, model, n_train, seed) cell.

`COLUMNS` is the ordered public contract; `validate` checks a frame against it and returns a
copy with canonical dtypes and column order. Units are stated in each column's description.

Per-example test outcomes are kept compactly per cell so that reports can add the test set's
sampling to their intervals and pair two models example by example (`gdbench.reports.stats`): the
correctness of every test example, bit-packed (`test_correct`, ceil(n_test / 8) bytes; unpack
with `unpack_correct(row.test_correct, row.n_test)`), and for the other per-example metrics the
standard deviation over test examples (`nll_sd`, `brier_sd`, `log_lik_sd`, and `ece_sd` for
ECE's terms). A cell of the ngjordan suite (at most 540 test examples) adds 68 bytes of bits and
five numbers, about 110 bytes before Parquet's compression: under 5 MB for its 43,200 cells.
Rows written before these columns existed load with n_test = 0, test_correct = b'' and NaN
spreads; reports then give intervals and tests over seeds only and say so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

SCHEMA_VERSION = 1

PARADIGMS = ("discriminative", "generative", "hybrid", "reference")
STATUSES = ("ok", "diverged", "failed")
CELL_KEY = ("task", "model", "n_train", "seed")


class SchemaError(ValueError):
    """Rows do not match the result schema; the message names the offending column."""


class SchemaVersionError(SchemaError):
    """Rows or a run were written under a different `SCHEMA_VERSION`."""


@dataclass(frozen=True)
class Column:
    """One column of the row table.

    `dtype` is the pandas dtype after `validate`: "str" (object of str), "int64", "float64",
    "boolean" (nullable) or "bytes" (object of bytes; Arrow binary in the store). A column
    with `required=False` may be left out and is then filled with `default`.
    """

    dtype: str
    description: str
    required: bool = True
    default: Any = None


COLUMNS: dict[str, Column] = {
    "task": Column("str", "task name, e.g. 'digits' or 'tfds:mnist'"),
    "model": Column("str", "model name, e.g. 'logreg', 'gnb', 'sk:LogisticRegression'"),
    "paradigm": Column("str", "one of discriminative | generative | hybrid | reference"),
    "n_train": Column("int64", "training examples in the cell, including its validation part"),
    "n_val": Column("int64", "of n_train, examples held out for model selection/calibration"),
    "seed": Column("int64", "seed of the cell (subset draw and initialisation)"),
    "accuracy": Column("float64", "test accuracy, fraction in [0, 1]"),
    "nll": Column("float64", "mean conditional -log p(y|x) on the test set, nats"),
    "ece": Column("float64", "top-label expected calibration error, 15 equal-width bins"),
    "brier": Column(
        "float64", "mean over test examples of sum over classes of (p - onehot)^2, in [0, 2]"
    ),
    "n_test": Column(
        "int64",
        "test examples the per-cell metrics are means over (the task's test set); 0 if not "
        "recorded (rows of earlier gdbench versions)",
        required=False,
        default=0,
    ),
    "test_correct": Column(
        "bytes",
        "per-example test outcomes: bit i (in the task's stored test order) is 1 where the most "
        "probable class of test example i is its label; numpy.packbits of the n_test booleans, "
        "most significant bit first, zero-padded to whole bytes (ceil(n_test / 8) bytes; "
        "unpack with results.schema.unpack_correct); b'' if not recorded",
        required=False,
        default=b"",
    ),
    **{
        f"{m}_sd": Column(
            "float64",
            f"standard deviation (ddof=1) over the cell's test examples of the per-example {what}, "
            f"{units}; with n_test it gives the test-set standard error of {m}, "
            f"{m}_sd / sqrt(n_test); NaN if not recorded{extra}",
            required=False,
            default=np.nan,
        )
        for m, what, units, extra in (
            ("nll", "-log p(y|x)", "nats", ""),
            ("brier", "sum over classes of (p - onehot)^2", "Brier units", ""),
            ("log_lik", "log p(x)", "nats, original feature units", " or n/a"),
            (
                "ece",
                "correct - confidence (the terms ECE sums per bin)",
                "probability units",
                "; sd / sqrt(n_test) approximately bounds the test-set standard error of ece "
                "(|.| is 1-Lipschitz)",
            ),
        )
    },
    "log_lik": Column(
        "float64",
        "mean log p(x) per test example, nats, in the task's original feature units; NaN if n/a",
        required=False,
        default=np.nan,
    ),
    "bits_per_dim": Column(
        "float64",
        "-log_lik / (D ln 2), bits per dimension; NaN if n/a",
        required=False,
        default=np.nan,
    ),
    "likelihood_is_bound": Column(
        "boolean",
        "False for an exact log_lik, True for an ELBO-like bound; null if n/a",
        required=False,
        default=pd.NA,
    ),
    "converged": Column(
        "boolean",
        "True when every iterative convex solve of the cell (logreg, linsvm, Platt scaling) "
        "met its convergence test (bench.fit: the (quasi-)Newton decrement at the final "
        "parameters at most rtol x |objective|), False when one did not (the message then says "
        "so too); null for models fitted otherwise",
        required=False,
        default=pd.NA,
    ),
    "elbo": Column(
        "float64",
        "for VAEs: mean ELBO lower bound on log p(x) per test example, nats, original units "
        "(log_lik then holds the tighter importance-weighted bound); NaN otherwise",
        required=False,
    ),
    "fd": Column(
        "float64",
        "Fréchet distance between the test set's and the model's class-conditional samples' "
        "features in gdbench's per-task feature classifier (bench.quality); lower is better; "
        "models that sample, largest size of the grid only; NaN otherwise",
        required=False,
        default=np.nan,
    ),
    "classifier_score": Column(
        "float64",
        "Inception-Score analogue of the samples, exp E KL(p(y|x) || p(y)) under the feature "
        "classifier, in [1, C]; higher is better; as fd",
        required=False,
        default=np.nan,
    ),
    "precision": Column(
        "float64",
        "fraction of samples inside the test set's k-NN manifold in feature space "
        "(Kynkäänniemi et al. 2019); as fd",
        required=False,
        default=np.nan,
    ),
    "recall": Column(
        "float64",
        "fraction of test examples inside the samples' k-NN manifold in feature space; as fd",
        required=False,
        default=np.nan,
    ),
    "cas": Column(
        "float64",
        "Classification Accuracy Score (Ravuri & Vinyals 2019): test accuracy of a fixed "
        "logistic regression trained on the model's samples, one per training example of the "
        "cell with its label; as fd",
        required=False,
        default=np.nan,
    ),
    "cas_real": Column(
        "float64",
        "test accuracy of the same classifier trained on the cell's real training subset "
        "(the reference for cas); as fd",
        required=False,
        default=np.nan,
    ),
    "ood_task": Column(
        "str",
        "OOD set of the OOD columns: a task or <task>:<transform> (tasks.ood); '' if none. "
        "Robustness columns (bench.robustness) are computed on the cells of the grid's largest "
        "training size, NaN / '' elsewhere and where the run did not ask for them",
        required=False,
        default="",
    ),
    "ood_auroc_logpx": Column(
        "float64",
        "AUROC of log p(x) separating the test set (positive) from the OOD set; 0.5 = chance; "
        "generative models with a density of the task's features, else NaN",
        required=False,
        default=np.nan,
    ),
    "ood_auroc_msp": Column(
        "float64",
        "AUROC of the maximum softmax probability (Hendrycks & Gimpel 2017) separating the test "
        "set (positive) from the OOD set; every model; NaN if not computed",
        required=False,
        default=np.nan,
    ),
    **{
        f"acc_miss{p}": Column(
            "float64",
            f"test accuracy with {p}% of the features of each test example hidden completely "
            "at random (fixed masks, the same for every model); NaN if not computed",
            required=False,
            default=np.nan,
        )
        for p in (25, 50, 75)
    },
    "missing_method": Column(
        "str",
        "how missing features were handled: marginalize (exact log p(x_obs, y)) or impute-mean "
        "(the training subset's mean); '' if not computed",
        required=False,
        default="",
    ),
    "fit_s": Column(
        "float64",
        "seconds per cell: wall time of the grid's fit program, the median of its timed "
        "repeats (fit_repeats), or when 0 its first, result-producing run after ahead-of-time "
        "compilation (the default for programs of 10 ms or more; gdbench.timing.time_program) "
        "/ grid_cells",
    ),
    "fit_s_min": Column(
        "float64",
        "seconds per cell: fastest timed repeat of the grid's fit / grid_cells (the first, "
        "result-producing run when fit_repeats is 0); NaN if not measured",
        required=False,
        default=np.nan,
    ),
    "fit_s_max": Column(
        "float64",
        "seconds per cell: slowest timed repeat of the grid's fit / grid_cells; NaN if not "
        "measured",
        required=False,
        default=np.nan,
    ),
    "fit_repeats": Column(
        "float64",
        "timed repeats of the grid's fit program after its first run (whose outputs are the "
        "results); 0 = the first run is the only measurement; NaN if not recorded",
        required=False,
        default=np.nan,
    ),
    "predict_s": Column(
        "float64",
        "seconds per cell: wall time of the grid's evaluation program, the median of its "
        "timed repeats (predict_repeats), or when 0 its first, result-producing run / "
        "grid_cells",
    ),
    "predict_s_min": Column(
        "float64",
        "seconds per cell: fastest timed repeat of the grid's evaluation / grid_cells; NaN if "
        "not measured",
        required=False,
        default=np.nan,
    ),
    "predict_s_max": Column(
        "float64",
        "seconds per cell: slowest timed repeat of the grid's evaluation / grid_cells; NaN if "
        "not measured",
        required=False,
        default=np.nan,
    ),
    "predict_repeats": Column(
        "float64",
        "timed repeats of the grid's evaluation program after its first run; 0 = the first "
        "run is the only measurement; NaN if not recorded",
        required=False,
        default=np.nan,
    ),
    "predict_per_s": Column(
        "float64",
        "evaluation throughput, test examples per second: test examples x grid_cells / the "
        "grid's median evaluation seconds; per grid, same value on every row; NaN if unknown",
        required=False,
        default=np.nan,
    ),
    "compile_s": Column(
        "float64",
        "seconds to compile the grid's programs; same value on every row of a grid, never sum",
    ),
    "input_s": Column(
        "float64",
        "seconds to copy the grid's inputs (training pool, test set, cell keys and weights) from "
        "the host to the device(s), jax.device_put until ready; apart from compile_s and fit_s; "
        "per grid, same value on every row; NaN if not measured",
        required=False,
        default=np.nan,
    ),
    "load_s": Column(
        "float64",
        "seconds to load the task (tasks.load: read or generate, preprocess) in the run that "
        "computed the row; per task, same value on every row of it; NaN if not measured",
        required=False,
        default=np.nan,
    ),
    "grid_cells": Column("int64", "number of cells in the grid this row was run in"),
    "flops": Column(
        "float64",
        "floating-point operations per cell, fit + evaluation programs: XLA's cost analysis "
        "with every loop body counted by its trip count (rows of earlier gdbench versions: "
        "XLA's loop-once count, when fit_repeats is NaN) / grid_cells; NaN if unknown",
        required=False,
        default=np.nan,
    ),
    "fit_flops": Column(
        "float64",
        "floating-point operations per cell of the fit program alone (as flops); NaN if unknown",
        required=False,
        default=np.nan,
    ),
    "bytes": Column(
        "float64",
        "bytes accessed per cell, fit + evaluation programs: XLA's cost analysis (operands and "
        "results of every operation after fusion, loop bodies by trip count) / grid_cells; "
        "NaN if unknown",
        required=False,
        default=np.nan,
    ),
    "peak_bytes": Column(
        "float64",
        "peak device memory of the grid, bytes: the larger of its two programs' peaks of live "
        "buffers (arguments, outputs, temporaries) from XLA's memory analysis; per grid, same "
        "value on every row; NaN where the backend does not report it",
        required=False,
        default=np.nan,
    ),
    "flop_rate": Column(
        "float64",
        "achieved FLOP/s of the fit program: fit_flops / fit_s (per grid); NaN if unknown",
        required=False,
        default=np.nan,
    ),
    "peak_fraction": Column(
        "float64",
        "flop_rate / the device's peak FLOP/s (CPU: measured float32 matmul peak; known "
        "GPU/TPU: published peak; which one is in the run manifest's provenance.device_peak); "
        "may exceed 1 (e.g. TF32 tensor cores); NaN if unknown",
        required=False,
        default=np.nan,
    ),
    "status": Column("str", "one of ok | diverged | failed"),
    "message": Column(
        "str", "diagnostic for a non-ok status; '' if none", required=False, default=""
    ),
    "bayes_accuracy": Column(
        "float64",
        "Bayes-optimal accuracy (synthetic tasks only, else NaN)",
        required=False,
        default=np.nan,
    ),
    "true_log_lik": Column(
        "float64",
        "mean log p(x) of the test set under the true density, nats (synthetic only, else NaN)",
        required=False,
        default=np.nan,
    ),
    "model_config": Column("str", "JSON object of the model's hyperparameters"),
    "preprocess": Column("str", "preprocessing applied to the features, e.g. 'standardize'"),
    "cell_key": Column(
        "str",
        "content key of the cell: hash of task + data checksum, model + hyperparameters, "
        "n_train, seed and code version; a resumed run recomputes only missing keys",
        required=False,
        default="",
    ),
    "schema_version": Column(
        "int64",
        "SCHEMA_VERSION the row was written under",
        required=False,
        default=SCHEMA_VERSION,
    ),
}

_UNIT_INTERVAL = (
    "accuracy",
    "ece",
    "bayes_accuracy",
    "precision",
    "recall",
    "cas",
    "cas_real",
    "ood_auroc_logpx",
    "ood_auroc_msp",
    "acc_miss25",
    "acc_miss50",
    "acc_miss75",
)
_NON_NEGATIVE = (
    "nll",
    "nll_sd",
    "brier_sd",
    "log_lik_sd",
    "ece_sd",
    "fd",
    "classifier_score",
    "fit_s",
    "fit_s_min",
    "fit_s_max",
    "predict_s",
    "predict_s_min",
    "predict_s_max",
    "predict_per_s",
    "compile_s",
    "input_s",
    "load_s",
    "flops",
    "fit_flops",
    "bytes",
    "peak_bytes",
    "flop_rate",
    "peak_fraction",
)
#: Counts stored as float64 (NaN: not recorded): non-negative integers when present.
_COUNTS = ("fit_repeats", "predict_repeats")
_TOL = 1e-6  # float32 round-off allowed at the ends of a metric's range


def empty_frame() -> pd.DataFrame:
    """An empty row table with every schema column in order and its canonical dtype."""
    return pd.DataFrame({name: pd.Series(dtype=_pandas_dtype(c)) for name, c in COLUMNS.items()})


def validate(df: pd.DataFrame) -> pd.DataFrame:
    """Check `df` against the schema and return a copy with canonical dtypes and column order.

    Optional columns that are absent are filled with their defaults. Raises `SchemaError`
    (a `ValueError`) with a one-line message naming the bad column, or `SchemaVersionError`
    when rows carry a different `schema_version`.
    """
    if not isinstance(df, pd.DataFrame):
        raise SchemaError(f"expected a pandas DataFrame, got {type(df).__name__}")
    if "schema_version" in df.columns:
        _check_version(df["schema_version"])
    unknown = [c for c in df.columns if c not in COLUMNS]
    if unknown:
        raise SchemaError(f"unknown column {unknown[0]!r} (not in result schema v{SCHEMA_VERSION})")
    missing = [n for n, c in COLUMNS.items() if c.required and n not in df.columns]
    if missing:
        raise SchemaError(f"missing required column {missing[0]!r}")

    out = {}
    for name, col in COLUMNS.items():
        if name in df.columns:
            values = df[name].reset_index(drop=True)
        else:
            values = pd.Series([col.default] * len(df), dtype=object)
        out[name] = _coerce(name, col, values)
    frame = pd.DataFrame(out)
    _check_values(frame)
    return frame


def _pandas_dtype(col: Column) -> Any:
    return object if col.dtype in ("str", "bytes") else col.dtype


def pack_correct(correct: np.ndarray) -> bytes:
    """The `test_correct` value of a cell: ``numpy.packbits`` of its per-example booleans
    (test order, most significant bit first, zero-padded to whole bytes)."""
    return np.packbits(np.asarray(correct, dtype=bool).ravel()).tobytes()


def unpack_correct(packed: bytes, n_test: int) -> np.ndarray:
    """The per-example test outcomes of a row: a boolean array of length `n_test`, True where
    the model's most probable class is the label (inverse of `pack_correct`).

    Raises `ValueError` when `packed` does not hold ``ceil(n_test / 8)`` bytes (e.g. b'', a row
    that did not record its outcomes).
    """
    n_test = int(n_test)
    if n_test < 1 or len(packed) != (n_test + 7) // 8:
        raise ValueError(
            f"test_correct has {len(packed)} bytes; {n_test} outcomes need {(n_test + 7) // 8}"
        )
    bits = np.unpackbits(np.frombuffer(packed, dtype=np.uint8), count=n_test)
    return bits.astype(bool)


def _check_version(values: pd.Series) -> None:
    found = sorted({v for v in values.dropna().unique().tolist()})
    bad = [v for v in found if v != SCHEMA_VERSION]
    if bad:
        raise SchemaVersionError(
            f"rows have schema_version {bad[0]!r}; this gdbench reads schema_version "
            f"{SCHEMA_VERSION}"
        )


def _coerce(name: str, col: Column, values: pd.Series) -> pd.Series:
    if col.dtype == "str":
        if name == "message":
            values = values.where(values.notna(), "")
        if values.isna().any():
            raise SchemaError(f"column {name!r} has {int(values.isna().sum())} null value(s)")
        not_str = [v for v in values if not isinstance(v, str)]
        if not_str:
            raise SchemaError(f"column {name!r} must hold strings, got {not_str[0]!r}")
        return values.astype(object)
    if col.dtype == "boolean":
        return _coerce_bool(name, values)
    if col.dtype == "bytes":
        return _coerce_bytes(name, values)
    try:
        numeric = pd.to_numeric(values, errors="raise")
    except (TypeError, ValueError) as err:
        raise SchemaError(f"column {name!r} is not numeric: {err}") from None
    if col.dtype == "int64":
        numeric = numeric.astype("float64") if numeric.dtype == bool else numeric
        if numeric.isna().any():
            raise SchemaError(f"column {name!r} has {int(numeric.isna().sum())} null value(s)")
        as_float = numeric.astype("float64")
        if not np.all(np.isfinite(as_float)) or not np.all(as_float == np.round(as_float)):
            raise SchemaError(f"column {name!r} must hold integers")
        return numeric.astype("int64")
    return numeric.astype("float64")


def _coerce_bool(name: str, values: pd.Series) -> pd.Series:
    cleaned = []
    for v in values:
        if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
            cleaned.append(pd.NA)
        elif isinstance(v, bool | np.bool_):
            cleaned.append(bool(v))
        else:
            raise SchemaError(f"column {name!r} must hold True, False or null, got {v!r}")
    return pd.Series(cleaned, dtype="boolean")


def _coerce_bytes(name: str, values: pd.Series) -> pd.Series:
    cleaned = []
    for v in values:
        if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
            cleaned.append(b"")
        elif isinstance(v, bytes | bytearray | memoryview):
            cleaned.append(bytes(v))
        else:
            raise SchemaError(f"column {name!r} must hold bytes, got {type(v).__name__}")
    return pd.Series(cleaned, dtype=object)


def _check_values(frame: pd.DataFrame) -> None:
    _check_choice(frame, "paradigm", PARADIGMS)
    _check_choice(frame, "status", STATUSES)
    for name in _UNIT_INTERVAL:
        _check_range(frame, name, 0.0, 1.0)
    for name in _NON_NEGATIVE:
        _check_range(frame, name, 0.0, np.inf)
    _check_range(frame, "brier", 0.0, 2.0)
    for name in _COUNTS:
        values = frame[name].dropna()
        if ((values < 0) | (values != np.round(values))).any():
            bad = float(values[(values < 0) | (values != np.round(values))].iloc[0])
            raise SchemaError(f"column {name!r} has {bad!r}; must be a whole number >= 0")
    if (frame["n_train"] < 1).any():
        raise SchemaError("column 'n_train' must be >= 1")
    if ((frame["n_val"] < 0) | (frame["n_val"] >= frame["n_train"])).any():
        raise SchemaError("column 'n_val' must satisfy 0 <= n_val < n_train")
    if (frame["n_test"] < 0).any():
        raise SchemaError("column 'n_test' must be >= 0")
    sizes = frame["test_correct"].map(len)
    recorded = sizes > 0
    if (sizes[recorded] != (frame.loc[recorded, "n_test"] + 7) // 8).any():
        raise SchemaError("column 'test_correct' must hold ceil(n_test / 8) bytes or b''")
    if (frame["grid_cells"] < 1).any():
        raise SchemaError("column 'grid_cells' must be >= 1")
    ok_without_accuracy = (frame["status"] == "ok") & frame["accuracy"].isna()
    if ok_without_accuracy.any():
        raise SchemaError("column 'accuracy' is NaN on a row with status 'ok'")
    for text in set(frame["model_config"]):  # a grid's rows share one
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, dict):
            raise SchemaError(f"column 'model_config' must hold a JSON object, got {text!r}")
    dup = frame.duplicated(subset=list(CELL_KEY))
    if dup.any():
        key = frame.loc[dup.idxmax(), list(CELL_KEY)].tolist()
        raise SchemaError(f"duplicate cell (task, model, n_train, seed) = {tuple(key)!r}")


def _check_choice(frame: pd.DataFrame, name: str, allowed: tuple[str, ...]) -> None:
    bad = sorted(set(frame[name]) - set(allowed))
    if bad:
        raise SchemaError(f"column {name!r} has {bad[0]!r}; valid: {', '.join(allowed)}")


def _check_range(frame: pd.DataFrame, name: str, lo: float, hi: float) -> None:
    values = frame[name].to_numpy(dtype="float64")
    with np.errstate(invalid="ignore"):
        bad = (values < lo - _TOL) | (values > hi + _TOL)  # False where NaN
    if bad.any():
        raise SchemaError(f"column {name!r} has {float(values[bad][0])!r}, outside [{lo}, {hi}]")
