"""A report's Markdown as one self-contained HTML page (index.html).

The page needs no other file and nothing from the network: local images are embedded as
base64 data URIs (PNG, SVG, JPEG, GIF, WebP), the stylesheet is inline, and there is no script.
SVG figures are embedded as data URIs in <img> rather than as inline <svg> elements, so that the
element ids of several matplotlib SVGs cannot clash within one page. Links to other local files
(results.csv, figure .svg/.pdf, .tex tables) stay relative links: they work when the page is
opened inside the report directory.
"""

from __future__ import annotations

import base64
import html
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import unquote, urlsplit

import markdown
from markdown.extensions import Extension
from markdown.treeprocessors import Treeprocessor

INDEX_HTML = "index.html"
IMAGE_TYPES = {
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}
MISSING_CLASS = "missing-figure"

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
  line-height: 1.5; color: #1f2328; background: #fff; max-width: 1000px; margin: 0 auto;
  padding: 1.5rem 2rem 3rem; }
h1, h2, h3 { line-height: 1.25; margin-top: 1.6em; }
h1 { border-bottom: 2px solid #d0d7de; padding-bottom: .3em; }
h2 { border-bottom: 1px solid #d0d7de; padding-bottom: .2em; }
a { color: #0969da; }
code, pre, kbd { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  font-size: .9em; }
code { background: #f6f8fa; padding: .1em .3em; border-radius: 4px; }
pre { background: #f6f8fa; padding: .8em 1em; overflow-x: auto; border-radius: 6px; }
pre code { background: none; padding: 0; }
.table-wrap { overflow-x: auto; margin: 1em 0; }
table { border-collapse: collapse; font-size: .85em; }
th, td { border: 1px solid #d0d7de; padding: .25em .45em; vertical-align: top; }
th { background: #eaeef2; }
tbody tr:nth-child(even) { background: #f6f8fa; }
td { font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; display: block; margin: 1em 0; }
nav.toc { background: #f6f8fa; border: 1px solid #d0d7de; border-radius: 6px;
  padding: .5em 1.2em; margin: 1em 0 2em; }
nav.toc ul { margin: .2em 0; padding-left: 1.2em; }
.missing-figure { display: inline-block; color: #82071e; background: #ffebe9;
  border: 1px dashed #cf222e; padding: .4em .8em; margin: .5em 0; font-family: monospace; }
footer { margin-top: 3em; color: #656d76; font-size: .85em; }
"""


def markdown_to_html(md_text: str, base_dir: str | Path, title: str) -> str:
    """Render report Markdown as one self-contained HTML page and return it as a string.

    Supports pipe tables, fenced code, headings (with ids and a generated table of contents
    of the level-2 and level-3 headings), links and images. Each image whose source is a local
    path (relative to `base_dir`) is embedded as a base64 data URI; a local image that does
    not exist or cannot be read becomes a visible "[missing figure: NAME]" placeholder, and a
    remote image (http:, https:, //) becomes a plain link so that nothing is fetched. Other
    links are kept as written. `title` is the page's <title> (HTML-escaped).
    """
    if not isinstance(md_text, str):
        raise TypeError(f"markdown_to_html: md_text must be str, got {type(md_text).__name__}")
    converter = markdown.Markdown(
        extensions=["tables", "fenced_code", "sane_lists", "toc", _Embed(base_dir)],
        extension_configs={"toc": {"toc_depth": "2-3"}},
        output_format="html",
    )
    # No raw HTML from the Markdown source: a report's text holds names from data and users
    # (tasks, models, classes, file paths), so '<script>' in one is shown as text, never run.
    # gdbench's own markup is made here and by the tree processors, not written as HTML.
    converter.preprocessors.deregister("html_block")
    converter.inlinePatterns.deregister("html")
    body = converter.convert(md_text)
    toc = getattr(converter, "toc_tokens", [])
    nav = (
        f'<nav class="toc" aria-label="Contents"><strong>Contents</strong>\n'
        f"{_toc_list(toc)}</nav>\n"
        if toc
        else ""
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<main>\n{_after_summary(body, nav)}\n</main>\n"
        "<footer>Self-contained page written by gdbench from the report's Markdown; "
        "figures are embedded, links to data files are relative to the report directory."
        "</footer>\n</body>\n</html>\n"
    )


def write_html(md_text: str, out_dir: str | Path, title: str = "gdbench report") -> Path:
    """Write `markdown_to_html(md_text, out_dir, title)` to out_dir/index.html (UTF-8).

    Image and link paths in `md_text` are relative to `out_dir` (the report directory, where
    report.md lives). Creates `out_dir` if needed and returns the path of index.html.
    """
    out = Path(out_dir)
    page = markdown_to_html(md_text, out, title)
    out.mkdir(parents=True, exist_ok=True)
    path = out / INDEX_HTML
    tmp = path.with_name(f".{INDEX_HTML}.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path


def _after_summary(body: str, nav: str) -> str:
    """`body` with `nav` inserted after its summary (the first <h2> section, when the report
    has one and another section follows it): the first screen is the verdict, not a list of
    contents. Otherwise after the leading <h1> (or at the start if it has none)."""
    first = body.find("<h2")
    if first >= 0 and body[first:].startswith(('<h2 id="summary"', "<h2>Summary")):
        second = body.find("<h2", first + 1)
        if second >= 0:
            return body[:second] + nav + body[second:]
    return _after_title(body, nav)


def _after_title(body: str, nav: str) -> str:
    """`body` with `nav` inserted after its leading <h1> (or at the start if it has none)."""
    end = body.find("</h1>")
    if body.startswith("<h1") and end >= 0:
        end += len("</h1>")
        return body[:end] + "\n" + nav + body[end:].lstrip("\n")
    return nav + body


def _toc_list(tokens: list[dict]) -> str:
    """Nested <ul> of the toc extension's heading tokens (id, name, children)."""
    if not tokens:
        return ""
    items = []
    for t in tokens:
        # `name` is already HTML-escaped by the toc extension.
        items.append(f'<li><a href="#{html.escape(t["id"])}">{t["name"]}</a>')
        items.append(_toc_list(t.get("children", [])) + "</li>")
    return "<ul>\n" + "\n".join(items) + "\n</ul>\n"


class _Embed(Extension):
    """Markdown extension: embed local images, wrap tables for horizontal scrolling."""

    def __init__(self, base_dir: str | Path):
        super().__init__()
        self.base_dir = Path(base_dir)

    def extendMarkdown(self, md: markdown.Markdown) -> None:  # noqa: N802 (markdown's API)
        # Below "unescape" (priority 0): runs last, on final attribute values.
        md.treeprocessors.register(_EmbedImages(md, self.base_dir), "gdbench_embed", -1)


class _EmbedImages(Treeprocessor):
    def __init__(self, md: markdown.Markdown, base_dir: Path):
        super().__init__(md)
        self.base_dir = base_dir

    def run(self, root: ET.Element) -> None:
        parents = {child: parent for parent in root.iter() for child in parent}
        for a in root.iter("a"):
            if not _safe_href(a.get("href", "")):
                a.attrib.pop("href")  # e.g. javascript: from a hostile name: text only
        for img in list(root.iter("img")):
            self._embed(img, parents[img])
        for table in list(root.iter("table")):
            parent = parents[table]
            wrap = ET.Element("div", {"class": "table-wrap"})
            index = list(parent).index(table)
            parent.remove(table)
            wrap.append(table)
            wrap.tail, table.tail = table.tail, None
            parent.insert(index, wrap)

    def _embed(self, img: ET.Element, parent: ET.Element) -> None:
        src = img.get("src", "")
        parts = urlsplit(src)
        if parts.scheme == "data":
            return
        if parts.scheme or parts.netloc:
            _replace(img, parent, _link(src, img.get("alt") or src))
            return
        name = unquote(parts.path)
        path = self.base_dir / name
        inside = path.resolve().is_relative_to(self.base_dir.resolve())
        mime = IMAGE_TYPES.get(path.suffix.lower()) if inside else None
        try:
            data = path.read_bytes() if mime else None
        except OSError:
            data = None
        if data is None:
            label = "missing figure" if mime or not path.exists() else "unsupported image"
            span = ET.Element("span", {"class": MISSING_CLASS, "role": "img"})
            span.text = f"[{label}: {name}]"
            _replace(img, parent, span)
            return
        img.set("src", f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}")
        img.set("data-source", name)


#: Link schemes a report may carry (relative links have none).
SAFE_SCHEMES = ("", "http", "https", "mailto")


def _safe_href(href: str) -> bool:
    """Whether a link target is a relative path, an anchor or an http(s)/mailto URL (no
    ``javascript:``, ``data:`` or other scheme that a browser would run or render)."""
    return urlsplit(href.strip()).scheme.lower() in SAFE_SCHEMES


def _link(href: str, text: str) -> ET.Element:
    a = ET.Element("a", {"href": href})
    a.text = f"[image: {text}]"
    return a


def _replace(old: ET.Element, parent: ET.Element, new: ET.Element) -> None:
    new.tail = old.tail
    index = list(parent).index(old)
    parent.remove(old)
    parent.insert(index, new)
