"""Self-contained HTML report, figure files (PNG/SVG/PDF), new figures, citation files, and the
page opened in a real headless browser (Chromium)."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import tomllib
import warnings
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib import image as mpimg
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from PIL import Image
from scipy import stats as sps
from statsmodels.stats.proportion import proportion_confint

from gdbench.reports import cite, figures
from gdbench.reports.html import markdown_to_html, write_html
from gdbench.results.store import safe_name

ROOT = Path(__file__).resolve().parent.parent
MODELS = {"logreg": "discriminative", "gnb": "generative", "vae": "generative", "jem": "hybrid"}
FIT_S = {"logreg": 0.02, "gnb": 0.001, "vae": 0.5, "jem": 3.0}
SIZES = (10, 40)
SEEDS = range(4)


def accuracy_of(model: str, n: int, seed: int) -> float:
    """Known accuracies: size, model and seed effects with unequal spread over seeds."""
    offset = {"logreg": 0.05, "gnb": 0.02, "vae": 0.0, "jem": 0.03}[model]
    spread = {"logreg": 0.01, "gnb": 0.02, "vae": 0.015, "jem": 0.03}[model]
    return 0.6 + 0.002 * n + offset + spread * (seed - 1.5) ** 2


def bits_of(model: str, seed: int) -> float:
    return {"gnb": 2.5, "vae": 1.8}[model] + 0.05 * seed


def synthetic_rows(tasks=("gauss_2d", "tfds:mnist")) -> pd.DataFrame:
    """tasks x 4 models x 2 sizes x 4 seeds; jem's seed 0 at n=40 of gauss_2d failed."""
    rows = []
    for task in tasks:
        for model, paradigm in MODELS.items():
            generative = paradigm == "generative"
            for n in SIZES:
                for seed in SEEDS:
                    failed = (task, model, n, seed) == ("gauss_2d", "jem", 40, 0)
                    rows.append(
                        {
                            "task": task,
                            "model": model,
                            "paradigm": paradigm,
                            "n_train": n,
                            "seed": seed,
                            "accuracy": np.nan if failed else accuracy_of(model, n, seed),
                            "fit_s": FIT_S[model],
                            "bits_per_dim": bits_of(model, seed) if generative else np.nan,
                            "likelihood_is_bound": (model == "vae") if generative else pd.NA,
                            "bayes_accuracy": np.nan,
                            "status": "failed" if failed else "ok",
                        }
                    )
    return pd.DataFrame(rows)


def t_interval(values) -> tuple[float, float]:
    """Mean and 95% t half-width, by scipy (independent of reports.stats)."""
    values = np.asarray(values, dtype=float)
    mean = values.mean()
    lo, _ = sps.t.interval(0.95, len(values) - 1, loc=mean, scale=sps.sem(values))
    return mean, mean - lo


def wilson_over_seeds(values) -> tuple[float, float]:
    """Mean and half-width of the seeds-only accuracy interval of rows without per-example
    outcomes: statsmodels' Wilson interval at the effective size p(1-p)/V, V = s^2/S,
    scaled by (z/t_{S-1})^2 (independent of reports.stats)."""
    values = np.asarray(values, dtype=float)
    p, k = values.mean(), len(values)
    scale = (sps.norm.ppf(0.975) / sps.t.ppf(0.975, k - 1)) ** 2
    n_eff = p * (1 - p) / (values.var(ddof=1) / k) * scale
    lo, hi = proportion_confint(p * n_eff, n_eff, method="wilson")
    return p, (hi - lo) / 2


def errorbars(ax) -> list[tuple]:
    """(x, y, x half-width, y half-width, marker line) of each errorbar drawn on `ax`."""
    out = []
    for container in ax.containers:
        data_line, _caps, bars = container.lines
        x, y = data_line.get_xdata()[0], data_line.get_ydata()[0]
        half = {"x": None, "y": None}
        for coll in bars:
            (p, q) = coll.get_segments()[0]
            if np.isclose(p[0], q[0]):
                half["y"] = abs(q[1] - p[1]) / 2
            else:
                half["x"] = abs(q[0] - p[0]) / 2
        out.append((float(x), float(y), half["x"], half["y"], data_line))
    return out


def check_three_formats(paths: list[Path], stems: list[str]) -> None:
    assert sorted(p.name for p in paths) == sorted(
        f"{s}.{ext}" for s in stems for ext in ("png", "svg", "pdf")
    )
    for p in paths:
        data = p.read_bytes()
        assert len(data) > 1000
        if p.suffix == ".png":
            assert data.startswith(b"\x89PNG\r\n\x1a\n")
        elif p.suffix == ".pdf":
            assert data.startswith(b"%PDF")
            assert data.rstrip().endswith(b"%%EOF")
        else:
            assert ET.fromstring(data).tag.endswith("svg")


# --- figure files -------------------------------------------------------------------------


def test_save_figure_writes_png_svg_pdf_reproducibly(tmp_path):
    def make():
        fig = Figure(figsize=(3.0, 2.0))
        ax = fig.add_subplot()
        ax.plot([1, 2, 3], [3, 1, 2])
        ax.set_title("a title")
        return fig

    first = figures.save_figure(make(), tmp_path / "a", "demo")
    second = figures.save_figure(make(), tmp_path / "b", "demo")
    assert [p.parent for p in first] == [tmp_path / "a" / "figures"] * 3
    check_three_formats(first, ["demo"])
    dpi = Image.open(first[0]).info["dpi"]
    assert dpi == pytest.approx((150, 150), abs=0.1)
    # No dates or tool versions inside: the same figure gives the same bytes.
    for p, q in zip(first, second, strict=True):
        assert p.read_bytes() == q.read_bytes(), p.name
    with pytest.raises(ValueError, match="not a safe file name"):
        figures.save_figure(make(), tmp_path, "tfds:mnist")


def test_learning_curves_and_samples_write_all_formats(tmp_path):
    df = synthetic_rows()
    paths = figures.learning_curves(df, tmp_path)
    check_three_formats(
        paths, ["learning_curve_gauss_2d", f"learning_curve_{safe_name('tfds:mnist')}"]
    )
    assert safe_name("tfds:mnist") != "tfds:mnist" and ":" not in paths[-1].name
    rng = np.random.default_rng(0)
    samples = [
        {
            "task": "digits",
            "model": "vae",
            "n_train": 40,
            "image_shape": [8, 8],
            "real": rng.random((2, 3, 64)),
            "samples": rng.random((2, 3, 64)),
        },
        {"task": "gauss_2d", "model": "vae", "image_shape": None},
    ]
    check_three_formats(figures.sample_grids(samples, tmp_path / "s"), ["samples_digits"])


def test_accuracy_vs_compute_points_and_intervals(tmp_path):
    df = synthetic_rows()
    fig = figures._accuracy_vs_compute_figure(df)
    axes = fig.axes
    assert len(axes) == 2  # one facet per task
    for ax, task in zip(axes, ["gauss_2d", "tfds:mnist"], strict=True):
        assert ax.get_xscale() == "log"
        assert task in ax.get_title()
        bars = {round(x, 6): (y, hy, line) for x, y, _, hy, line in errorbars(ax)}
        assert len(bars) == len(MODELS)
        for model, paradigm in MODELS.items():
            seeds = [s for s in SEEDS if not (task, model, s) == ("gauss_2d", "jem", 0)]
            mean, half = wilson_over_seeds([accuracy_of(model, max(SIZES), s) for s in seeds])
            y, hy, line = bars[round(FIT_S[model], 6)]
            assert y == pytest.approx(mean, abs=1e-12)
            assert hy == pytest.approx(half, rel=1e-9)
            assert to_rgba(line.get_color()) == to_rgba(figures.PARADIGM_COLORS[paradigm])
        labels = {t.get_text() for t in ax.texts}
        assert {"logreg", "gnb", "vae"} <= labels
    # The failed cell is counted in the label, not silently dropped.
    assert "jem (1 not ok)" in {t.get_text() for t in axes[0].texts}
    assert "jem" in {t.get_text() for t in axes[1].texts}

    check_three_formats(figures.accuracy_vs_compute(df, tmp_path), ["accuracy_vs_compute"])
    assert figures.accuracy_vs_compute(df.iloc[:0], tmp_path / "empty") == []
    assert not (tmp_path / "empty").exists()


def test_likelihood_vs_accuracy_hollow_bounds(tmp_path):
    df = synthetic_rows(tasks=("gauss_2d",))
    fig = figures._likelihood_vs_accuracy_figure(df)
    (ax,) = fig.axes
    points = errorbars(ax)
    assert len(points) == 2  # only the models with a likelihood: gnb and vae
    colors = figures.model_colors(
        df["model"].unique(), df.groupby("model")["paradigm"].first().to_dict()
    )
    for model in ("gnb", "vae"):
        bpd, bpd_half = t_interval([bits_of(model, s) for s in SEEDS])
        acc, acc_half = wilson_over_seeds([accuracy_of(model, max(SIZES), s) for s in SEEDS])
        x, y, hx, hy, line = next(p for p in points if np.isclose(p[0], bpd))
        assert y == pytest.approx(acc, abs=1e-12)
        assert hx == pytest.approx(bpd_half, rel=1e-9)
        assert hy == pytest.approx(acc_half, rel=1e-9)
        assert to_rgba(line.get_markeredgecolor()) == to_rgba(colors[model])
        face = to_rgba(line.get_markerfacecolor())
        # vae's likelihood is a bound: hollow (white face); gnb's is exact: filled.
        assert face == (to_rgba("white") if model == "vae" else to_rgba(colors[model]))
    legend = " ".join(t.get_text() for t in fig.legends[0].get_texts())
    assert "bound" in legend

    check_three_formats(figures.likelihood_vs_accuracy(df, tmp_path), ["likelihood_vs_accuracy"])
    no_lik = df.assign(bits_per_dim=np.nan)
    assert figures.likelihood_vs_accuracy(no_lik, tmp_path / "none") == []
    assert figures.likelihood_vs_accuracy(df.iloc[:0], tmp_path / "none") == []
    assert not (tmp_path / "none").exists()


def crossover_table(n_star: float, lo: float, hi: float) -> pd.DataFrame:
    sizes = [10, 20, 40, 80]
    diff = [-0.06, -0.02, 0.01, 0.03]
    table = pd.DataFrame({"pair": "gnb_shared vs logreg", "n_train": sizes, "mean_diff": diff})
    table["lo"], table["hi"] = table["mean_diff"] - 0.015, table["mean_diff"] + 0.015
    table["n_star"], table["n_star_lo"], table["n_star_hi"] = n_star, lo, hi
    other = table.assign(pair="gnb vs logreg", mean_diff=-0.04, n_star=np.nan)
    other["lo"], other["hi"] = -0.05, -0.03
    return pd.concat([table, other], ignore_index=True)


def test_crossover_plot(tmp_path):
    per_size = {
        "gauss_2d": crossover_table(30.0, 22.0, 45.0),
        "tfds:mnist": crossover_table(np.nan, np.nan, np.nan),
    }
    paths = figures.crossover_plot(per_size, tmp_path)
    check_three_formats(paths, ["crossover_gauss_2d", f"crossover_{safe_name('tfds:mnist')}"])

    fig = figures._crossover_figure(per_size["gauss_2d"], "gauss_2d")
    (ax,) = fig.axes
    assert ax.get_xscale() == "log"
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    shared = lines["gnb_shared vs logreg"]
    np.testing.assert_allclose(shared.get_xdata(), [10, 20, 40, 80])
    np.testing.assert_allclose(shared.get_ydata(), [-0.06, -0.02, 0.01, 0.03])
    horizontal = [ln for ln in ax.get_lines() if list(ln.get_ydata()) == [0.0, 0.0]]
    assert horizontal, "no zero line"
    (n_line,) = [ln for ln in ax.get_lines() if ln.get_label().strip().startswith("n* ≈ 30")]
    assert list(n_line.get_xdata()) == [30.0, 30.0]
    assert "22" in n_line.get_label() and "45" in n_line.get_label()
    # The CI of n* is a shaded vertical span from 22 to 45; each pair's band is a fill too.
    spans = [(p.get_x(), p.get_x() + p.get_width()) for p in ax.patches]
    assert any(np.allclose(span, (22.0, 45.0)) for span in spans), spans
    assert len(ax.collections) >= 2

    none = figures._crossover_figure(per_size["tfds:mnist"], "tfds:mnist")
    labels = [ln.get_label() for ln in none.axes[0].get_lines()]
    assert not any(label.strip().startswith("n* ≈") for label in labels)

    assert figures.crossover_plot({}, tmp_path / "none") == []
    assert figures.crossover_plot({"a": pd.DataFrame()}, tmp_path / "none") == []
    with pytest.raises(ValueError, match="no column 'n_star'"):
        figures.crossover_plot({"a": per_size["gauss_2d"].drop(columns="n_star")}, tmp_path)


def test_long_model_specs_are_wrapped_so_the_crossover_layout_fits(tmp_path):
    long = "conv_vae?channels=4&iwae_k=4&latent=2&steps=25 vs cnn?channels=4&hidden=8&steps=25"
    wrapped = figures.wrap_label(long)
    assert wrapped.replace("\n", "") == long
    assert all(len(line) <= figures.LABEL_WIDTH for line in wrapped.split("\n"))
    assert figures.wrap_label("gnb vs logreg") == "gnb vs logreg"
    assert figures.wrap_label("x" * 60) == "x" * 60  # nowhere to break: left whole
    # Broken before " vs " when that is where the width runs out.
    assert figures.wrap_label("a" * 30 + " vs " + "b" * 30) == "a" * 30 + "\nvs " + "b" * 30
    # With such labels unwrapped, constrained layout gave up ("axes sizes collapsed to zero").
    table = crossover_table(np.nan, np.nan, np.nan)
    table["pair"] = table["pair"].map(
        {"gnb_shared vs logreg": long, "gnb vs logreg": "gnb vs cnn?channels=4&hidden=8&steps=25"}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        paths = figures.crossover_plot({"tfds:mnist": table}, tmp_path)
    assert len(paths) == 3
    fig = figures._crossover_figure(table, "tfds:mnist")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert wrapped in labels


# --- HTML ---------------------------------------------------------------------------------


class _Tags(HTMLParser):
    """Every start tag with its attributes, by Python's own HTML parser."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def parse_tags(page: str) -> list[tuple[str, dict]]:
    parser = _Tags()
    parser.feed(page)
    return parser.tags


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, str, list[Path]]:
    """A report directory with two real figures and Markdown like report.md's."""
    df = synthetic_rows(tasks=("gauss_2d",))
    out = tmp_path_factory.mktemp("html") / "report"
    pngs = [p for p in figures.learning_curves(df, out) if p.suffix == ".png"][:1]
    pngs += [p for p in figures.accuracy_vs_compute(df, out) if p.suffix == ".png"]
    (out / "results.csv").write_text("task,model\n")
    figure_md = "\n\n".join(
        f"![{p.stem}](figures/{p.name})\n\n[{p.stem} (PDF)](figures/{p.stem}.pdf)" for p in pngs
    )
    md = (
        "# gdbench report\n\nAll rows: [results.csv](results.csv).\n\n"
        "## Results by task\n\n### gauss_2d\n\n"
        "| model | paradigm | accuracy |\n|---|---|---|\n"
        "| logreg | discriminative | 0.820 ± 0.020 |\n| gnb | generative | 0.790 ± 0.030 |\n\n"
        f"## Figures\n\n{figure_md}\n\n```\ngdbench report runs/quick\n```\n"
    )
    return out, md, pngs


@pytest.mark.fast
def test_markdown_to_html_is_self_contained(report):
    out, md, pngs = report
    svg_rel = "figures/accuracy_vs_compute.svg"
    md += f"\n![vector]({svg_rel})\n\n![gone](figures/nope.png)\n"
    page = markdown_to_html(md, out, title="A <test> report")
    tags = parse_tags(page)

    assert ("meta", {"charset": "utf-8"}) in tags
    assert "<title>A &lt;test&gt; report</title>" in page
    imgs = [attrs for tag, attrs in tags if tag == "img"]
    assert len(imgs) == 3
    for png, attrs in zip(pngs, imgs, strict=False):
        prefix = "data:image/png;base64,"
        assert attrs["src"].startswith(prefix)
        assert base64.b64decode(attrs["src"][len(prefix) :]) == png.read_bytes()
    svg_prefix = "data:image/svg+xml;base64,"
    assert imgs[2]["src"].startswith(svg_prefix)
    svg = base64.b64decode(imgs[2]["src"][len(svg_prefix) :])
    assert svg == (out / svg_rel).read_bytes()
    assert "[missing figure: figures/nope.png]" in page

    # Tables rendered as tables, with their cells.
    assert [t for t, _ in tags].count("table") == 1
    assert re.search(r"<td>0\.820 ± 0\.020</td>", page)
    # Links to local data files stay relative; the table of contents links the headings.
    hrefs = [a.get("href") for t, a in tags if t == "a"]
    assert "results.csv" in hrefs
    assert f"figures/{pngs[0].stem}.pdf" in hrefs
    ids = {a["id"] for _, a in tags if "id" in a}
    toc = [h for h in hrefs if h and h.startswith("#")]
    assert {"#results-by-task", "#gauss_2d", "#figures"} <= set(toc)
    assert all(h[1:] in ids for h in toc)
    # Nothing is fetched: no scripts, no external stylesheets, no remote sources.
    assert "<script" not in page.lower()
    assert not any(t == "link" for t, _ in tags)
    for _, attrs in tags:
        for key in ("src", "href"):
            value = attrs.get(key) or ""
            assert not value.startswith(("http:", "https:", "//")), value
    assert "<code>gdbench report runs/quick" in page


def test_remote_images_become_links_and_write_html(report, tmp_path):
    page = markdown_to_html("![logo](https://example.org/logo.png)\n", tmp_path, "t")
    tags = parse_tags(page)
    assert not any(t == "img" for t, _ in tags)
    assert ("a", {"href": "https://example.org/logo.png"}) in tags

    out, md, _ = report
    path = write_html(md, out)
    assert path == out / "index.html"
    assert path.read_text(encoding="utf-8") == markdown_to_html(md, out, "gdbench report")
    assert "<title>gdbench report</title>" in path.read_text(encoding="utf-8")
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


# --- the page in a real browser -----------------------------------------------------------

CHROMIUM_HINT = (
    "no chromium binary on PATH: install it (Debian/Ubuntu, as root: "
    "apt-get install --no-install-recommends chromium; `make test` does this when it can)"
)
PROBE = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var loaded = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  var p = document.createElement("pre");
  p.id = "gdbench-probe";
  p.textContent = "PROBE imgs=" + imgs.length + " loaded=" + loaded +
    " tables=" + document.getElementsByTagName("table").length + " END";
  document.body.appendChild(p);
});
</script>"""


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def run_chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    command = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_page_renders_in_headless_chromium(report, tmp_path):
    binary = chromium()
    if binary is None:
        pytest.skip(CHROMIUM_HINT)
    out, md, pngs = report
    page = write_html(md, out).read_text(encoding="utf-8")
    assert page.count("</body>") == 1
    probed = tmp_path / "probed.html"  # a copy: the report page itself has no script
    probed.write_text(page.replace("</body>", PROBE + "\n</body>"), encoding="utf-8")

    done = run_chromium(
        binary, tmp_path / "profile", "--virtual-time-budget=5000", "--dump-dom", probed.as_uri()
    )
    found = re.search(r"PROBE imgs=(\d+) loaded=(\d+) tables=(\d+) END", done.stdout)
    assert found, f"probe not in the DOM (rc {done.returncode}): {done.stderr[-2000:]}"
    n_imgs, n_loaded, n_tables = map(int, found.groups())
    assert n_imgs == len(pngs) == 2
    assert n_loaded == n_imgs, "an embedded image did not decode in the browser"
    assert n_tables == 1

    shot = tmp_path / "shot.png"
    done = run_chromium(
        binary,
        tmp_path / "profile",
        "--window-size=1200,2000",
        "--hide-scrollbars",
        f"--screenshot={shot}",
        (out / "index.html").as_uri(),
    )
    assert shot.is_file(), f"no screenshot (rc {done.returncode}): {done.stderr[-2000:]}"
    pixels = mpimg.imread(shot)
    assert pixels.shape[:2] == (2000, 1200)
    assert float(pixels[..., :3].var()) > 0.0, "blank screenshot"
    # The figures are drawn: plenty of pixels are neither page white nor pure text black.
    grey = pixels[..., :3].mean(axis=-1)
    assert ((grey > 0.05) & (grey < 0.95)).mean() > 0.01


# --- citation -----------------------------------------------------------------------------

BIB_ENTRY = re.compile(r"@(\w+)\{([^,\s]+),\n(.*?)\n\}\n", re.S)
BIB_FIELD = re.compile(r"^\s+(\w+)\s+= (?:\{(.*)\}|([a-z]+)),?$")  # braced, or a month macro


def parse_bib(text: str) -> list[tuple[str, str, dict[str, str]]]:
    entries = []
    for kind, key, body in BIB_ENTRY.findall(text):
        fields = {}
        for line in body.splitlines():
            m = BIB_FIELD.match(line)
            assert m, f"bad field line {line!r}"
            fields[m.group(1)] = m.group(2) if m.group(2) is not None else m.group(3)
        entries.append((kind, key, fields))
    return entries


def balanced(text: str) -> bool:
    """Unescaped braces balance (a \\{ or \\} is text, not grouping)."""
    depth = 0
    for m in re.finditer(r"\\[{}]|[{}]", text):
        if m.group(0) in ("{", "}"):
            depth += 1 if m.group(0) == "{" else -1
            if depth < 0:
                return False
    return depth == 0


def test_bibtex_cites_software_and_runs():
    manifests = {
        "quick": {
            "name": "quick",
            "config": {"suite": "quick"},
            "started_utc": "2026-11-21T18:35:13Z",
            "finished_utc": "2026-11-21T18:38:32Z",
            "provenance": {
                "gdbench_version": "0.1.0",
                "git_commit": "a8716d079a0b32d1d4d5aa2bb27c11b15208f8ee",
                "git_dirty": True,
                "device_kind": "NVIDIA H100",
                "device_count": 2,
            },
        },
        "odd {name}_50%": {"provenance": {}},
        "Quick": {},
    }
    text = cite.bibtex(manifests, "0.1.0")
    entries = parse_bib(text)
    assert len(entries) == 4 and text.count("@") == 4
    kinds = [k for k, _, _ in entries]
    assert kinds == ["misc", "misc", "misc", "misc"]  # @misc: classic BibTeX and biblatex
    keys = [key for _, key, _ in entries]
    assert all(re.fullmatch(r"[A-Za-z0-9_.:-]+", key) for key in keys)
    assert len({k.lower() for k in keys}) == len(keys)  # BibTeX keys are case-insensitive

    software = entries[0][2]
    assert software["note"] == "Version 0.1.0" and software["year"] == "2026"
    assert software["url"] == cite.URL
    run = entries[1][2]
    for fact in (
        "suite quick",
        "a8716d079a0b32d1d4d5aa2bb27c11b15208f8ee with uncommitted changes",
        "NVIDIA H100 x 2",
        "2026-11-21T18:35:13Z",
        "2026-11-21T18:38:32Z",
    ):
        assert fact in run["note"]
    assert run["year"] == "2026"
    odd = entries[2][2]
    assert (
        odd["title"] == r"{gdbench} benchmark run {odd \textbraceleft{}name\textbraceright{}\_50\%}"
    )
    assert "git commit unknown" in odd["note"] and "year" not in odd
    assert balanced(text)
    with pytest.raises(ValueError, match="version"):
        cite.bibtex({}, "")


def read_cff(path: Path) -> dict:
    """CITATION.cff as a dict: PyYAML when installed, else a minimal top-level parser."""
    text = path.read_text(encoding="utf-8")
    try:
        import yaml
    except ImportError:
        out: dict = {}
        for line in text.splitlines():
            m = re.match(r"^([A-Za-z][\w-]*):\s*(.*)$", line)
            if m:
                out[m.group(1)] = m.group(2).strip().strip('"') or None
        return out
    return yaml.safe_load(text)


def test_citation_cff_matches_pyproject():
    cff = read_cff(ROOT / "CITATION.cff")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for key in ("cff-version", "message", "title", "type", "authors", "version", "license"):
        assert key in cff, key
    for key in ("date-released", "abstract", "keywords", "url"):
        assert key in cff, key
    assert str(cff["cff-version"]) == "1.2.0"
    assert cff["title"] == cite.TITLE and cff["type"] == "software"
    assert str(cff["version"]) == project["version"]
    assert cff["license"] == project["license"]
    assert str(cff["date-released"]) == "2026-11-21"
    assert cff["url"] == cite.URL
    if isinstance(cff["authors"], list):  # parsed by PyYAML
        assert cff["authors"] == [{"name": "gdbench developers"}]
        assert len(cff["keywords"]) >= 3
    assert cite.YEAR == int(str(cff["date-released"])[:4])
