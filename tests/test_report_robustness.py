"""The robustness report section (reports/robustness.py) on synthetic rows: the OOD table's
means and 95% t-intervals against scipy, the largest size chosen, the missing-feature table
and figure, the files written, and nothing at all when the rows hold no robustness values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from gdbench.reports.robustness import missing_stats, ood_stats, robustness_section

SEEDS = (0, 1, 2, 3)
MODELS = {"gnb_shared": ("generative", "marginalize"), "logreg": ("discriminative", "impute-mean")}


def _rows() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for model, (paradigm, method) in MODELS.items():
        for n in (50, 200):
            for seed in SEEDS:
                generative = paradigm == "generative"
                rows.append(
                    {
                        "task": "digits",
                        "model": model,
                        "paradigm": paradigm,
                        "n_train": n,
                        "seed": seed,
                        "status": "ok",
                        "accuracy": 0.9 + 0.01 * rng.normal(),
                        "ood_task": "digits:contrast0.3" if n == 200 else "",
                        "ood_auroc_logpx": 0.05 + 0.01 * seed
                        if generative and n == 200
                        else np.nan,
                        "ood_auroc_msp": 0.9 - 0.02 * seed if n == 200 else np.nan,
                        "acc_miss25": 0.85 + 0.01 * rng.normal() if n == 200 else np.nan,
                        "acc_miss50": (0.8 if generative else 0.6) + 0.01 * seed
                        if n == 200
                        else np.nan,
                        "acc_miss75": 0.6 + 0.01 * rng.normal() if n == 200 else np.nan,
                        "missing_method": method if n == 200 else "",
                    }
                )
    return pd.DataFrame(rows)


def _t_interval(values: list[float]) -> tuple[float, float]:
    v = np.asarray(values, float)
    half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return float(v.mean()), float(half)


@pytest.mark.fast
def test_ood_table_and_files(tmp_path):
    df = _rows()
    lines = robustness_section(df, tmp_path)
    text = "\n".join(lines)
    assert lines[0].startswith("## Robustness")
    assert "#### digits against digits:contrast0.3" in text
    mean, half = _t_interval([0.05 + 0.01 * s for s in SEEDS])
    assert f"{mean:.3f} ± {half:.3f}" in text
    mean, half = _t_interval([0.9 - 0.02 * s for s in SEEDS])
    row = next(line for line in lines if line.startswith("| logreg"))
    assert f"{mean:.3f} ± {half:.3f}" in row and "—" in row  # no log p(x) for logreg
    for stem in ("ood_auroc", "missing_features_digits"):
        for ext in ("png", "svg", "pdf"):
            assert (tmp_path / "figures" / f"{stem}.{ext}").stat().st_size > 0
            assert f"figures/{stem}.png" in text
    (path,) = (tmp_path / "tables").glob("ood_digits__digits_contrast0.3*.tex")
    assert f"tables/{path.name}" in text
    tex = path.read_text()
    assert "\\toprule" in tex and "GNB (shared var.)" in tex  # display names


def test_statistics_at_the_largest_size_with_values():
    df = _rows()
    ood = ood_stats(df)
    assert set(ood["n_train"]) == {200} and set(ood["ood_task"]) == {"digits:contrast0.3"}
    miss = missing_stats(df)
    assert set(miss["n_train"]) == {200}
    by_model = miss.set_index("model")
    assert by_model.loc["gnb_shared", "missing_method"] == "marginalize"
    assert by_model.loc["logreg", "missing_method"] == "impute-mean"
    mean, half = _t_interval([0.6 + 0.01 * s for s in SEEDS])
    assert by_model.loc["logreg", "acc_miss50_mean"] == pytest.approx(mean)
    assert by_model.loc["logreg", "acc_miss50_ci95"] == pytest.approx(half)
    expected = df[(df["model"] == "logreg") & (df["n_train"] == 200)]["accuracy"].mean()
    assert by_model.loc["logreg", "accuracy_mean"] == pytest.approx(expected)


def test_failed_cell_is_counted_not_averaged(tmp_path):
    df = _rows()
    bad = (df["model"] == "logreg") & (df["n_train"] == 200) & (df["seed"] == 3)
    df.loc[bad, ["status", "acc_miss50", "missing_method"]] = ["failed", np.nan, ""]
    miss = missing_stats(df).set_index("model")
    assert miss.loc["logreg", "n_not_ok"] == 1
    assert miss.loc["logreg", "missing_method"] == "impute-mean"
    assert miss.loc["logreg", "acc_miss50_mean"] == pytest.approx(np.mean([0.6, 0.61, 0.62]))
    text = "\n".join(robustness_section(df, tmp_path))
    assert "(+1 not ok)" in text


def test_nothing_without_robustness_values(tmp_path):
    df = _rows()
    plain = df.drop(
        columns=[c for c in df.columns if c.startswith(("ood_", "acc_miss", "missing_"))]
    )
    assert robustness_section(plain, tmp_path) == []
    empty = df.assign(ood_task="", acc_miss25=np.nan, acc_miss50=np.nan, acc_miss75=np.nan)
    assert robustness_section(empty, tmp_path) == []
    assert not (tmp_path / "figures").exists() and not (tmp_path / "tables").exists()
    # OOD values alone give the OOD part only.
    ood_only = df.drop(columns=["acc_miss25", "acc_miss50", "acc_miss75"])
    text = "\n".join(robustness_section(ood_only, tmp_path))
    assert "### Out-of-distribution detection" in text and "### Missing features" not in text
