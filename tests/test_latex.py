"""LaTeX tables: escaping, bold best cells, paired t-test marks (Holm) against scipy, balance."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from statsmodels.stats.proportion import proportion_confint

from gdbench.reports import latex
from gdbench.reports.stats import DuplicateCellError, holm, paired_p

UNESCAPED_AMP = re.compile(r"(?<!\\)&")


def row(task, model, n, seed, accuracy, paradigm="discriminative", status="ok", **extra):
    """One result row with every column the tables read; metrics default to fixed values."""
    values = {
        "task": task,
        "model": model,
        "paradigm": paradigm,
        "n_train": n,
        "n_val": 0,
        "seed": seed,
        "accuracy": accuracy if status == "ok" else np.nan,
        "nll": 0.5,
        "ece": 0.05,
        "brier": 0.3,
        "log_lik": np.nan,
        "bits_per_dim": np.nan,
        "likelihood_is_bound": None,
        "status": status,
        "bayes_accuracy": np.nan,
        "model_config": json.dumps({}),
        "preprocess": "standardize",
    }
    values.update(extra)
    return values


def physical_rows(tex: str) -> list[list[str]]:
    """Cells of every body row (between \\midrule and \\bottomrule), split on unescaped &."""
    body = tex.split("\\midrule\n", 1)[1].split("\\bottomrule", 1)[0]
    return [
        [c.strip() for c in UNESCAPED_AMP.split(line.removesuffix("\\\\").strip())]
        for line in body.strip().splitlines()
    ]


def physical_header(tex: str) -> list[str]:
    head = tex.split("\\toprule\n", 1)[1].split("\\midrule", 1)[0]
    return [c.strip() for c in UNESCAPED_AMP.split(head.strip().removesuffix("\\\\").strip())]


MULTI = re.compile(r"\\multicolumn\{2\}\{c\}\{(.*)\}")


def header_cells(tex: str) -> list[str]:
    """The logical column headers: a number column with its interval column (multicolumn)
    is one; the braces protecting an S column's header are dropped."""
    out = []
    for cell in physical_header(tex):
        match = MULTI.fullmatch(cell)
        if match:
            cell = match[1]
        elif cell.startswith("{") and cell.endswith("}"):
            cell = cell[1:-1]
        out.append(cell)
    return out


def _unbold(cell: str) -> tuple[str, bool]:
    if cell.startswith("\\bfseries "):
        return cell[len("\\bfseries ") :], True
    match = re.fullmatch(r"\\textbf\{(.*)\}((?:\$\^\{[^{}$]*\}\$)?)", cell)
    if match:
        return match[1] + match[2], True
    return cell, False


def table_rows(tex: str) -> list[list[str]]:
    """Logical cells of every body row: a number and the text after it (an interval, as
    $^{+a}_{-b}$ or $\\pm$ h, and marks) joined by a space, the whole in \\textbf{} when bold
    (marks after it); braced text of a number column unbraced."""
    groups = [2 if MULTI.fullmatch(c) else 1 for c in physical_header(tex)]
    rows = []
    for cells in physical_rows(tex):
        out, k = [], 0
        for width in groups:
            first, bold = _unbold(cells[k])
            if first.startswith("{") and first.endswith("}"):
                first = first[1:-1]
            after = ""
            if width == 2:
                after, bold_after = _unbold(cells[k + 1])
                bold = bold or bold_after
            marks = re.search(r"((?:\$\^\{[^{}$]*\}\$)*)$", after).group(1)
            after = after[: len(after) - len(marks)] if marks else after
            text = first + (" " + after if after else "")
            out.append((f"\\textbf{{{text}}}" if bold else text) + marks)
            k += width
        rows.append(out)
    return rows


def by_model(tex: str) -> dict[str, dict[str, str]]:
    header = header_cells(tex)
    return {cells[0]: dict(zip(header, cells, strict=True)) for cells in table_rows(tex)}


def compact(mean: float, lo: float, hi: float, decimals: int = 3) -> str:
    """The cell text of an asymmetric interval: the printed mean, then $^{+up}_{-down}$."""
    m, low, high = (float(f"{v:.{decimals}f}") for v in (mean, lo, hi))
    return f"{m:.{decimals}f} $^{{+{high - m:.{decimals}f}}}_{{-{m - low:.{decimals}f}}}$"


def assert_balanced(tex: str) -> None:
    """Environments nest, braces balance, each row has columns-1 separators, $ pair up."""
    stack = []
    for kind, env in re.findall(r"\\(begin|end)\{(\w+\*?)\}", tex):
        if kind == "begin":
            stack.append(env)
        else:
            assert stack and stack.pop() == env
    assert not stack
    unescaped = re.sub(r"\\[{}$&%#_]", "", tex)
    depth = 0
    for ch in unescaped:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0
    assert depth == 0
    spec = re.search(r"\\begin\{tabular\}\{@\{\}(.*)@\{\}\}\n", tex).group(1)
    bare = re.sub(
        r"[@>]\{[^{}]*(?:\{[^{}]*\}[^{}]*)*\}|S\[[^]]*\]", lambda m: "S" * (m[0][0] == "S"), spec
    )
    assert set(bare) <= {"l", "S"}, spec
    n_physical = len(bare)
    assert all(len(cells) == n_physical for cells in physical_rows(tex))
    assert sum(2 if MULTI.fullmatch(c) else 1 for c in physical_header(tex)) == n_physical
    for line in tex.splitlines():
        assert line.replace("\\$", "").count("$") % 2 == 0, line
    assert tex.count("\\toprule") == tex.count("\\midrule") == tex.count("\\bottomrule") == 1
    assert "\\usepackage{booktabs}" in tex.splitlines()[0] and tex.startswith("%")
    assert "\\usepackage{siunitx}" in tex.splitlines()[0]


@pytest.fixture(autouse=True)
def raw_names():
    """Model and paradigm names as they are (display names are tested on their own)."""
    from gdbench.reports.names import DEFAULT_MODELS, DEFAULT_PARADIGMS, DisplayNames

    names = DisplayNames(
        models={m: m for m in DEFAULT_MODELS}, paradigms={p: p for p in DEFAULT_PARADIGMS}
    )
    with latex.tex_options(names=names):
        yield


# --- escaping and the generic table -------------------------------------------------------


@pytest.mark.fast
def test_escape_latex_every_special_character():
    text = "a_b & 50% #1 $x$ {y} ~z^2 back\\slash <tag> a|b"
    expected = (
        r"a\_b \& 50\% \#1 \$x\$ \{y\} \textasciitilde{}z\textasciicircum{}2 "
        r"back\textbackslash{}slash \textless{}tag\textgreater{} a\textbar{}b"
    )
    assert latex.escape_latex(text) == expected
    assert latex.escape_latex("line\nbreak") == "line break"
    assert latex.escape_latex("plain text 1.5") == "plain text 1.5"


def test_dataframe_to_booktabs_escapes_bolds_and_balances():
    frame = pd.DataFrame(
        {"n_cross": [40, 80], "gap_%": [0.125, np.nan]},
        index=pd.Index(["sk:Logistic_Regression", "gnb & co"], name="model"),
    )
    bold = pd.DataFrame([[True, False], [False, False]], index=frame.index, columns=frame.columns)
    tex = latex.dataframe_to_booktabs(
        frame, "Crossover: 100% of seeds", "tab:gdbench-cross x", bold
    )
    assert_balanced(tex)
    assert header_cells(tex) == ["model", r"n\_cross", r"gap\_\%"]
    assert table_rows(tex) == [
        [r"sk:Logistic\_Regression", r"\textbf{40}", "0.125"],
        [r"gnb \& co", "80", "---"],
    ]
    assert r"\caption{Crossover: 100\% of seeds}" in tex
    assert r"\label{tab:gdbench-cross-x}" in tex
    assert r"\begin{tabular}{@{}lS[table-format=2]S[table-format=1.3]@{}}" in tex
    assert r"\bfseries 40" in tex and "{---}" in tex
    with pytest.raises(ValueError, match="bold has shape"):
        latex.dataframe_to_booktabs(frame, "c", "tab:x", bold=np.zeros((3, 2), dtype=bool))


# --- headline tables ----------------------------------------------------------------------


def three_model_rows(n_seeds: int = 5) -> pd.DataFrame:
    """gauss task, n in {20, 40}: gnb best accuracy, logreg best NLL, lda ties logreg on ECE."""
    rows = []
    for n in (20, 40):
        for seed in range(n_seeds):
            s = 0.01 * seed
            rows += [
                row(
                    "gauss",
                    "gnb",
                    n,
                    seed,
                    0.80 + s,
                    "generative",
                    nll=0.40 + s,
                    ece=0.03,
                    log_lik=-2.0,
                    bits_per_dim=1.25 + s,
                    likelihood_is_bound=False,
                ),
                row("gauss", "logreg", n, seed, 0.75 + s, nll=0.30 + s, ece=0.02),
                row(
                    "gauss",
                    "lda",
                    n,
                    seed,
                    0.70 + s,
                    "generative",
                    nll=0.35 + s,
                    ece=0.02,
                    log_lik=-3.0,
                    bits_per_dim=1.50 + s,
                    likelihood_is_bound=False,
                ),
            ]
    return pd.DataFrame(rows)


def test_headline_bolds_the_best_per_column_and_ties(tmp_path):
    df = three_model_rows()
    tables = latex.headline_tables(df)
    assert list(tables) == ["headline_gauss.tex"]
    tex = tables["headline_gauss.tex"]
    assert_balanced(tex)
    header = header_cells(tex)
    rows = by_model(tex)
    top = df[df["n_train"] == 40].groupby("model")
    expected_best = {
        "Accuracy $\\uparrow$": {top["accuracy"].mean().idxmax()},
        "NLL $\\downarrow$": {top["nll"].mean().idxmin()},
        "ECE $\\downarrow$": {"logreg", "lda"},  # exact tie: both bold
        "Brier $\\downarrow$": {"gnb", "logreg", "lda"},
        "Bits/dim $\\downarrow$": {top["bits_per_dim"].mean().idxmin()},
    }
    assert header[3:] == list(expected_best)
    for column, best in expected_best.items():
        bolded = {m for m, cells in rows.items() if "\\textbf{" in cells[column]}
        assert bolded == best, column
    # rows without per-example outcomes (older runs): over seeds only. Accuracy: statsmodels'
    # Wilson interval at the effective size p(1-p)/V, V = s^2/S, scaled by (z/t_{S-1})^2
    acc = top.get_group("gnb")["accuracy"].to_numpy()
    k, p = len(acc), acc.mean()
    z, t = sps.norm.ppf(0.975), sps.t.ppf(0.975, len(acc) - 1)
    n_eff = p * (1 - p) / (acc.var(ddof=1) / k) * (z / t) ** 2
    lo, hi = proportion_confint(p * n_eff, n_eff, method="wilson")
    assert rows["gnb"]["Accuracy $\\uparrow$"] == f"\\textbf{{{compact(p, lo, hi)}}}"
    # NLL: the 95% t half-width over seeds, from scipy directly
    nll = top.get_group("gnb")["nll"].to_numpy()
    half = t * nll.std(ddof=1) / np.sqrt(k)
    assert rows["gnb"]["NLL $\\downarrow$"].startswith(f"{nll.mean():.3f} $\\pm$ {half:.3f}")
    assert rows["logreg"]["Bits/dim $\\downarrow$"] == "---"
    assert "n_{\\mathrm{train}}=40" in tex and "\\label{tab:gdbench:headline-gauss}" in tex


def test_ties_at_printed_precision_are_all_bold():
    df = three_model_rows()
    df.loc[df["model"] == "lda", "accuracy"] = df.loc[df["model"] == "gnb", "accuracy"].to_numpy()
    df.loc[df["model"] == "lda", "accuracy"] -= 1e-5  # below the 3 printed decimals
    rows = by_model(latex.headline_tables(df)["headline_gauss.tex"])
    bolded = {m for m, c in rows.items() if "\\textbf{" in c["Accuracy $\\uparrow$"]}
    assert bolded == {"gnb", "lda"}


def test_all_missing_column_is_omitted_and_failed_cells_are_counted():
    df = three_model_rows()
    df = df[df["model"] != "gnb"].copy()
    df = df[df["model"] != "lda"].copy()
    failed = pd.DataFrame([row("gauss", "logreg", 40, 7, 0.0, status="failed")])
    tex = latex.headline_tables(pd.concat([df, failed]))["headline_gauss.tex"]
    assert_balanced(tex)
    assert "Bits/dim" not in tex
    assert by_model(tex)["logreg"]["Seeds"] == "5 (+1)"
    assert "logreg at $n=40$ (1 of 6)" in tex


def paired_rows(n_seeds: int, diffs: dict[str, np.ndarray], seed_effect: np.ndarray):
    """Accuracy = 0.7 + seed effect (shared by all models) + the model's per-seed offset."""
    rows = []
    for model, d in diffs.items():
        for seed in range(n_seeds):
            rows.append(row("t", model, 50, seed, 0.7 + seed_effect[seed] + d[seed]))
    return pd.DataFrame(rows)


def test_significance_mark_uses_paired_t_test_with_holm():
    rng = np.random.default_rng(0)
    n = 10
    seed_effect = rng.normal(0, 0.05, n)  # large spread shared by all models on a seed
    worse = -0.01 - 0.002 * rng.random(n)  # worse on every seed, by much less than the spread
    noisy = np.array([0.012, -0.013, 0.011, -0.014, 0.010, -0.012, 0.013, -0.011, 0.009, -0.01])
    df = paired_rows(n, {"best": np.zeros(n), "worse": worse, "noisy": noisy}, seed_effect)
    acc = df.pivot(index="seed", columns="model", values="accuracy")
    assert acc.mean().idxmax() == "best"

    p_worse = sps.ttest_rel(acc["worse"], acc["best"]).pvalue
    p_noisy = sps.ttest_rel(acc["noisy"], acc["best"]).pvalue
    holm_worse = min(1.0, 2 * min(p_worse, p_noisy))  # the smaller p is multiplied by m = 2
    assert holm_worse < 0.05 < p_noisy
    # an unpaired test cannot see the difference through the seed-to-seed spread
    assert sps.ttest_ind(acc["worse"], acc["best"]).pvalue > 0.05
    assert sps.mannwhitneyu(acc["worse"], acc["best"]).pvalue > 0.05

    tex = latex.headline_tables(df)["headline_t.tex"]
    rows = by_model(tex)
    assert rows["worse"]["Accuracy $\\uparrow$"].endswith("$^{*}$")
    assert "$^{*}$" not in rows["noisy"]["Accuracy $\\uparrow$"]
    assert "$^{*}$" not in rows["best"]["Accuracy $\\uparrow$"]
    # rows without per-example outcomes: the paired t-test over seeds, and the caption says so
    assert "McNemar" in tex and "test over seeds only" in tex and "Wilcoxon" not in tex
    d = (acc["worse"] - acc["best"]).to_numpy()
    assert paired_p(d) == pytest.approx(sps.ttest_1samp(d, 0.0).pvalue, rel=1e-12)


def test_five_seeds_worse_on_every_seed_gets_the_mark():
    """The case the exact Wilcoxon test cannot detect: its p is 2 / 2**5 > 0.05 at best."""
    n = 5
    seed_effect = np.array([0.04, -0.03, 0.01, -0.05, 0.02])
    worse = -np.array([0.010, 0.014, 0.008, 0.012, 0.016])  # varying amount, every seed
    df = paired_rows(n, {"best": np.zeros(n), "worse": worse}, seed_effect)
    acc = df.pivot(index="seed", columns="model", values="accuracy")
    d = (acc["worse"] - acc["best"]).to_numpy()
    assert (d < 0).all() and np.ptp(d) > 0.005
    assert sps.wilcoxon(d).pvalue == pytest.approx(2 / 2**5)  # never below 0.05 with 5 seeds
    p = sps.ttest_rel(acc["worse"], acc["best"]).pvalue
    assert p < 0.05  # one comparison: Holm leaves it unchanged
    tex = latex.headline_tables(df)["headline_t.tex"]
    rows = by_model(tex)
    assert rows["worse"]["Accuracy $\\uparrow$"].endswith("$^{*}$")
    assert rows["best"]["Accuracy $\\uparrow$"].startswith("\\textbf{")
    assert "no model differs significantly" not in tex


def test_holm_correction_removes_marks_that_raw_p_values_would_give():
    n = 5
    seed_effect = np.linspace(-0.05, 0.05, n)
    diffs = {
        "best": np.zeros(n),
        "a": np.array([-0.019, -0.015, -0.010, -0.005, -0.001]),
        "b": np.array([-0.004, -0.020, -0.002, -0.016, -0.010]),
    }
    df = paired_rows(n, diffs, seed_effect)
    acc = df.pivot(index="seed", columns="model", values="accuracy")
    raw = np.array([sps.ttest_rel(acc[m], acc["best"]).pvalue for m in ("a", "b")])
    # each raw p alone would be significant, but 2 * min(p) is not: Holm rejects neither
    assert (raw < 0.05).all() and 2 * raw.min() >= 0.05
    assert holm(raw) == pytest.approx([max(2 * raw.min(), p) for p in raw])
    rows = by_model(latex.headline_tables(df)["headline_t.tex"])
    assert not any("$^{*}$" in c["Accuracy $\\uparrow$"] for c in rows.values())
    # without the other comparison (m = 1) the same data for "a" is marked
    alone = by_model(latex.headline_tables(df[df["model"] != "b"])["headline_t.tex"])
    assert alone["a"]["Accuracy $\\uparrow$"].endswith("$^{*}$")


def test_identical_model_is_tied_and_never_marked():
    n = 5
    df = paired_rows(n, {"best": np.zeros(n), "copy": np.zeros(n)}, np.linspace(0, 0.1, n))
    acc = df.pivot(index="seed", columns="model", values="accuracy")
    assert paired_p((acc["copy"] - acc["best"]).to_numpy()) == 1.0
    tex = latex.headline_tables(df)["headline_t.tex"]
    rows = by_model(tex)
    for model in ("best", "copy"):
        assert rows[model]["Accuracy $\\uparrow$"].startswith("\\textbf{")
        assert "$^{*}$" not in rows[model]["Accuracy $\\uparrow$"]
    assert "no model differs significantly" in tex and "single ok seed" not in tex


def test_a_model_sharing_one_seed_with_the_best_is_not_tested():
    n = 5
    df = paired_rows(n, {"best": np.zeros(n)}, np.linspace(0, 0.1, n))
    lone = pd.DataFrame([row("t", "lone", 50, 0, 0.5)])  # far worse, but a single pair
    tex = latex.headline_tables(pd.concat([df, lone], ignore_index=True))["headline_t.tex"]
    rows = by_model(tex)
    assert rows["lone"]["Seeds"] == "1"
    assert "$^{*}$" not in rows["lone"]["Accuracy $\\uparrow$"]
    assert "or a single one without per-example outcomes, are not tested" in tex
    assert np.isnan(paired_p([0.5 - 0.7]))


def test_bound_mark_and_escaped_names():
    df = three_model_rows()
    vae = df[df["model"] == "gnb"].copy()
    vae["model"] = "vae_iw&k"
    vae["likelihood_is_bound"] = True
    vae["bits_per_dim"] += 0.5 + 0.01 * np.arange(
        len(vae)
    )  # worse on every seed, by varying amounts
    df = pd.concat([df, vae])
    df["task"] = "csv:my_data.csv"
    tables = latex.headline_tables(df)
    (name,) = tables
    assert re.fullmatch(r"headline_csv_my_data\.csv-[0-9a-f]{8}\.tex", name)
    tex = tables[name]
    assert_balanced(tex)
    rows = by_model(tex)
    # about 0.5 bits/dim worse than gnb on every seed: significant as well as a bound
    assert rows[r"vae\_iw\&k"][r"Bits/dim $\downarrow$"].endswith("$^{*\\dagger}$")
    assert "\\dagger" not in rows["gnb"]["Bits/dim $\\downarrow$"]
    assert "$^{\\dagger}$: an upper bound on bits/dim" in tex
    assert r"Results on csv:my\_data.csv at" in tex


def test_learning_curve_table_values_and_missing_task():
    df = three_model_rows(n_seeds=4)
    tex = latex.learning_curve_table(df, "gauss")
    assert_balanced(tex)
    assert header_cells(tex) == ["Model", "Paradigm", "$n=20$", "$n=40$"]
    rows = by_model(tex)
    values = df[(df["model"] == "logreg") & (df["n_train"] == 20)]["accuracy"].to_numpy()
    # seeds only (no per-example outcomes): statsmodels' Wilson interval at the effective size
    p = values.mean()
    n_eff = (
        p * (1 - p) / (values.var(ddof=1) / 4) * (sps.norm.ppf(0.975) / sps.t.ppf(0.975, 3)) ** 2
    )
    lo, hi = proportion_confint(p * n_eff, n_eff, method="wilson")
    assert rows["logreg"]["$n=20$"] == compact(p, lo, hi)
    assert rows["gnb"]["$n=40$"].startswith("\\textbf{")
    with pytest.raises(ValueError, match="no rows of task 'wine'; tasks present: gauss"):
        latex.learning_curve_table(df, "wine")


def test_write_tables_and_duplicate_cells(tmp_path):
    df = three_model_rows()
    paths = latex.write_tables(df, tmp_path)
    assert sorted(p.name for p in paths) == ["headline_gauss.tex", "learning_curve_gauss.tex"]
    assert all(p.parent == tmp_path / "tables" for p in paths)
    assert (tmp_path / "tables" / "headline_gauss.tex").read_text() == latex.headline_tables(df)[
        "headline_gauss.tex"
    ]
    with pytest.raises(DuplicateCellError):
        latex.headline_tables(pd.concat([df, df.iloc[:1]]))


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_tables_compile_with_pdflatex(tmp_path):
    paths = latex.write_tables(three_model_rows(), tmp_path)
    inputs = "\n".join(f"\\input{{{p}}}" for p in paths)
    doc = tmp_path / "doc.tex"
    doc.write_text(
        "\\documentclass{article}\\usepackage{booktabs,siunitx,graphicx}\\begin{document}\n"
        f"{inputs}\n\\end{{document}}\n"
    )
    proc = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:]
