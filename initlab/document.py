"""The document layer: a report built once as blocks, written as ``report.md`` and a self-contained
``report.html``; tables for markdown, HTML and the terminal; number formats; one colour per name.

Every report shares one skeleton (:meth:`Document.report`, then tables, sentences, figures and
:meth:`Document.files`) and one figure (:func:`figure`, :func:`save`, :func:`grids`); its numbers over
seeds come from :mod:`initlab.seeds` (one mean ± std format, one band, one NaN policy).

An experiment's report is a function that reads its result folder and fills a :class:`Document`::

    doc = Document("initlab probe", settings_line("20 layers of 256 units", meta))
    doc.heading("Results")
    doc.table(["init", "relu"], [["kaiming", "0.99"]])
    doc.bullets(["kaiming keeps the signal."])
    doc.image("Plot", folder / "probe.png")
    doc.write(folder)          # report.md + report.html, each atomically
"""
from __future__ import annotations

import base64
import html
import math
import multiprocessing as mp
import os
import statistics
import zlib
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from initlab import forking
from initlab.files import atomic_write_text
from initlab.seeds import count

PAGE_STYLE = ("body{font-family:system-ui,sans-serif;max-width:1400px;margin:2em auto;padding:0 1em;"
              "color:#222}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;"
              "text-align:right}td:first-child,th:first-child{text-align:left}img{max-width:100%}"
              "li{margin:.4em 0}")


# --------------------------------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------------------------------

def finite(xs: Sequence) -> List[float]:
    """The values of ``xs`` that are numbers and not NaN."""
    return [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]


def mean(xs: Sequence) -> float:
    """The mean of the numbers in ``xs`` that are not None/NaN (NaN for none); a mean over seeds goes
    through :func:`initlab.seeds.over_seeds`, which counts what it leaves out."""
    xs = finite(xs)
    return statistics.fmean(xs) if xs else math.nan


def pct(x: Optional[float], digits: int = 2) -> str:
    """A fraction as a percentage, ``n/a`` for a missing value."""
    return "n/a" if x is None or math.isnan(x) else f"{100 * x:.{digits}f} %"


# --------------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------------

def md_table(head: Sequence, body: Sequence[Sequence]) -> str:
    return "\n".join(["| " + " | ".join(map(str, head)) + " |", "|" + "---|" * len(head)]
                     + ["| " + " | ".join(str(c) for c in row) + " |" for row in body])


def html_table(head: Sequence, body: Sequence[Sequence]) -> str:
    th = "".join(f"<th>{html.escape(str(h))}</th>" for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                  for row in body)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"


def text_table(head: Sequence, body: Sequence[Sequence]) -> str:
    """Columns padded to their widest cell, for the terminal."""
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]

    def line(cells):
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths))

    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(b) for b in body])


# --------------------------------------------------------------------------------------------------
# Colours: one per name, the same in every report
# --------------------------------------------------------------------------------------------------

# The lab's five inits keep the colours their plots always had; the rest of the registry and the
# transfer modes get their own. A name not listed here takes a colour from EXTRA chosen by a hash of
# the name, so it too is the same in every report.
COLOURS = {
    "zeros": "#d62728", "uniform": "#ff7f0e", "normal": "#9467bd", "xavier": "#1f77b4",
    "kaiming": "#2ca02c", "orthogonal": "#8c564b", "lsuv": "#e377c2", "dbn": "#7f7f7f",
    "lecun_normal": "#bcbd22", "torch_default": "#17becf", "xavier_uniform": "#393b79",
    "kaiming_uniform": "#637939", "lecun_uniform": "#8c6d31", "truncated_normal": "#843c39",
    "finetune": "#000000", "reinit_head": "#e6550d", "freeze": "#3182bd",
}
EXTRA = ["#7b4173", "#5254a3", "#8ca252", "#bd9e39", "#ad494a", "#a55194", "#6b6ecf", "#b5cf6b",
         "#e7ba52", "#d6616b", "#ce6dbd", "#9c9ede", "#cedb9c", "#e7cb94", "#e7969c", "#de9ed6"]


# --------------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------------

def _import_plotting() -> None:
    import matplotlib.backends.backend_agg  # noqa: F401  (what Figure.savefig draws with)
    import matplotlib.figure  # noqa: F401


DPI = 100           # every report figure's resolution, unless a figure says why not


def figure(rows: int = 1, cols: int = 1, width: float = 6.4, height: float = 4.2, *,
           margins: Optional[Dict[str, float]] = None, rect: Optional[Tuple[float, ...]] = None, **kw):
    """(Figure, axes[rows][cols]): every report's figure, a matplotlib Figure without pyplot (its import
    and figure manager cost ~0.3 s; nothing to close). ``margins``: fixed, in inches (``left``, ``right``,
    ``bottom``, ``top``, ``wgap``, ``hgap``), for big grids -- ``tight_layout`` measures every tick label
    of every panel (1.5 s of a 2 s study report on its 5 x 5 weight grid); without, matplotlib's tight
    layout places the panels in ``rect`` (figure fraction) when the figure is saved. ``kw``: to
    ``Figure.subplots`` (``sharey=True``)."""
    from matplotlib.figure import Figure
    from matplotlib.layout_engine import TightLayoutEngine

    if margins is None:
        fig = Figure(figsize=(width, height), layout=TightLayoutEngine(rect=rect or (0, 0, 1, 1)))
        return fig, fig.subplots(rows, cols, squeeze=False, **kw)
    m = {"left": 0.75, "right": 0.2, "bottom": 0.6, "top": 0.45, "wgap": 0.7, "hgap": 0.5, **margins}
    fig = Figure(figsize=(width, height))
    axes = fig.subplots(rows, cols, squeeze=False, **kw)
    aw = (width - m["left"] - m["right"] - m["wgap"] * (cols - 1)) / cols
    ah = (height - m["bottom"] - m["top"] - m["hgap"] * (rows - 1)) / rows
    fig.subplots_adjust(left=m["left"] / width, right=1 - m["right"] / width, bottom=m["bottom"] / height,
                        top=1 - m["top"] / height, wspace=m["wgap"] / aw, hspace=m["hgap"] / ah)
    return fig, axes


def save(fig, path: Path, dpi: int = DPI) -> Path:
    """Draw ``fig`` into the PNG ``path``; returns ``path``."""
    fig.savefig(path, dpi=dpi)
    return Path(path)


def grids(axes, **kw) -> None:
    """The lab's light grid on every panel of ``axes`` (a grid of axes, a list or one)."""
    for ax in getattr(axes, "flat", axes if isinstance(axes, (list, tuple)) else [axes]):
        ax.grid(alpha=0.3, **kw)


DRAW_TIMEOUT = 120.0    # s a forked plot child may take before its job is drawn here instead


def draw_all(jobs: Sequence[Tuple[Callable[[Path], Optional[Path]], Path]]) -> List[Optional[Path]]:
    """Run plot jobs ``(draw, path)``: ``draw(path)`` draws one figure into ``path`` and returns the
    path, or None when it has nothing to draw. Returns, in order, each job's path or None. On Linux the
    first job draws in a forked child while this process draws the others (two cores: about half the
    time for a study's report). A child that fails, or is still drawing after ``DRAW_TIMEOUT``, leaves
    its job to this process, which then raises what the job raises; in a daemonic process (which may
    not have children) or elsewhere, every job draws here."""
    if len(jobs) < 2 or not forking.fork_available() or mp.current_process().daemon:
        return [draw(path) for draw, path in jobs]
    _import_plotting()                        # once, before the fork: the child inherits it
    draw, path = jobs[0]

    def child() -> None:
        try:
            code = 0 if draw(path) is not None else 3
        except BaseException:
            code = 2
        os._exit(code)

    proc = mp.get_context("fork").Process(target=child, daemon=True)
    try:
        forking.start(proc)
    except (OSError, AssertionError, ValueError):
        return [draw(path) for draw, path in jobs]
    try:
        rest = [d(p) for d, p in jobs[1:]]
    finally:
        proc.join(DRAW_TIMEOUT)
        if proc.is_alive():
            proc.terminate()
            proc.join()
    first = path if proc.exitcode == 0 else None if proc.exitcode == 3 else draw(path)
    return [first] + rest


def note_panel(ax, note: str) -> None:
    """Replace a plot panel that has nothing to show by a one-line note (no empty axes)."""
    ax.clear()
    ax.set_axis_off()
    ax.text(0.5, 0.5, note, ha="center", va="center", wrap=True, fontsize=9, color="gray",
            transform=ax.transAxes)


def log_scale_or_note(ax, note: str) -> bool:
    """A log y axis when the panel has a finite positive value to show; otherwise (every value 0, as
    with all-zero weights) the panel becomes ``note``. True when the panel is drawn."""
    import numpy as np

    for line in ax.lines:
        y = np.asarray(line.get_ydata(), dtype=float)
        if np.any(np.isfinite(y) & (y > 0)):
            ax.set_yscale("log")
            return True
    note_panel(ax, note)
    return False


def colours(names: Sequence[str]) -> Dict[str, str]:
    """{name: colour}: a registered name gets its own colour; a parametrized spec
    (``normal:std=0.05``) or an unknown name gets a colour by hash, moving to the next free one when
    two names of one figure would share it."""
    out: Dict[str, str] = {}
    used = set()
    for name in names:
        colour = COLOURS.get(name)
        if colour is None or colour in used:
            start = zlib.crc32(name.encode()) % len(EXTRA)
            free = [EXTRA[(start + k) % len(EXTRA)] for k in range(len(EXTRA))]
            colour = next((c for c in free if c not in used), free[0])
        out[name] = colour
        used.add(colour)
    return out


# --------------------------------------------------------------------------------------------------
# Documents
# --------------------------------------------------------------------------------------------------

def settings_line(description: str, meta: dict) -> str:
    """What was run (``description``, from the config) and where (read from ``meta.json``)."""
    env = meta.get("environment", {})
    threads = env.get("cpu_threads")
    workers = meta.get("store", {}).get("workers") or 1
    where = f"torch {env.get('torch')}, " + (f"{workers} worker processes x " if workers > 1 else "") + \
        f"{threads} CPU thread{'' if threads == 1 else 's'}" + (" each" if workers > 1 else "")
    if env.get("cuda"):
        where += f", GPU {env['cuda']}"
    return f"{description}; {where}"


def status_note(meta: dict, command: str, out: Path) -> Optional[str]:
    """The report's first paragraph when not every planned run finished (from a stored experiment's
    ``meta.json``): how many are missing, that the tables hold finished runs only, how to resume."""
    unfinished, failed = meta.get("unfinished", 0), meta.get("failed") or []
    if not unfinished and not failed:
        return None
    what = "Interrupted" if meta.get("interrupted") else "Incomplete"
    text = (f"{what}: {unfinished} planned run{'' if unfinished == 1 else 's'} did not finish"
            + (f" ({len(failed)} failed: {failed[0]}{' ...' if len(failed) > 1 else ''})" if failed else "")
            + f"; every table and sentence here comes from the finished runs only. "
            f"`initlab {command} --resume --out {out}` trains the rest.")
    return text


def html_image(caption: str, path: Path, level: int = 3) -> str:
    """A heading and the PNG at ``path`` embedded as base64, so the page needs no other file."""
    b64 = base64.b64encode(Path(path).read_bytes()).decode()
    return (f"<h{level}>{html.escape(caption)}</h{level}><img alt='{html.escape(caption)}' "
            f"src='data:image/png;base64,{b64}'>")


def html_page(title: str, parts: Sequence[str], style: str = PAGE_STYLE) -> str:
    """A self-contained HTML document from body fragments."""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")


class Document:
    """A report as a list of blocks, rendered once to markdown and once to HTML."""

    def __init__(self, title: str, settings: Optional[str] = None) -> None:
        self.title = title
        self.blocks: List[Tuple[str, tuple]] = []
        if settings:
            self.paragraph(settings.rstrip(".") + ".")

    @classmethod
    def report(cls, title: str, settings: str, meta: dict, note: Optional[str] = None) -> "Document":
        """Every report's head, one skeleton: the title, marked ' (interrupted)' (Ctrl-C), ' (2 runs
        failed: not in the tables)' or ' (incomplete)' (a ``note`` says what is missing, e.g.
        :func:`status_note`), from ``meta.json``; the settings line; the note. Then come tables,
        sentences, figures and :meth:`files`."""
        failed = meta.get("failed") or []
        if note is None and meta.get("interrupted"):
            note = "Interrupted: every table and sentence here comes from the runs recorded before Ctrl-C."
        mark = (" (interrupted)" if meta.get("interrupted") else
                f" ({count(len(failed), 'run')} failed: not in the tables)" if failed else
                " (incomplete)" if note else "")
        return cls(title + mark, settings).paragraph(note or "")

    def files(self, text: str) -> "Document":
        """The last section: what each file of the result folder holds."""
        return self.heading("Files").paragraph(text)

    def heading(self, text: str, level: int = 2) -> "Document":
        self.blocks.append(("heading", (text, level)))
        return self

    def paragraph(self, text: str, bold: bool = False) -> "Document":
        if text:
            self.blocks.append(("paragraph", (text, bold)))
        return self

    def bullets(self, sentences: Sequence[str]) -> "Document":
        if sentences:
            self.blocks.append(("bullets", (list(sentences),)))
        return self

    def table(self, head: Sequence, body: Sequence[Sequence]) -> "Document":
        self.blocks.append(("table", (list(head), [list(r) for r in body])))
        return self

    def image(self, caption: str, path: Optional[Path], level: int = 3) -> "Document":
        """A PNG beside the report (skipped when ``path`` is None: nothing to draw)."""
        if path is not None:
            self.blocks.append(("image", (caption, Path(path), level)))
        return self

    def code(self, text: str) -> "Document":
        self.blocks.append(("code", (text,)))
        return self

    def markdown(self) -> str:
        md = [f"# {self.title}", ""]
        for kind, args in self.blocks:
            if kind == "heading":
                md += ["#" * args[1] + " " + args[0], ""]
            elif kind == "paragraph":
                md += [f"**{args[0]}**" if args[1] else args[0], ""]
            elif kind == "bullets":
                md += [f"- {s}" for s in args[0]] + [""]
            elif kind == "table":
                md += [md_table(*args), ""]
            elif kind == "image":
                caption, path, level = args
                md += ["#" * level + " " + caption, "", f"![{caption}]({path.name})", ""]
            elif kind == "code":
                md += ["    " + line for line in args[0].splitlines()] + [""]
        return "\n".join(md)

    def html(self, style: str = PAGE_STYLE) -> str:
        parts = [f"<h1>{html.escape(self.title)}</h1>"]
        for kind, args in self.blocks:
            if kind == "heading":
                parts.append(f"<h{args[1]}>{html.escape(args[0])}</h{args[1]}>")
            elif kind == "paragraph":
                text = html.escape(args[0])
                parts.append(f"<p><b>{text}</b></p>" if args[1] else f"<p>{text}</p>")
            elif kind == "bullets":
                parts.append("<ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in args[0]) + "</ul>")
            elif kind == "table":
                parts.append(html_table(*args))
            elif kind == "image":
                parts.append(html_image(*args))
            elif kind == "code":
                parts.append(f"<pre><code>{html.escape(args[0])}</code></pre>")
        return html_page(self.title, parts, style)

    def write(self, folder: Path, style: str = PAGE_STYLE) -> Path:
        """``report.md`` and ``report.html`` into ``folder``; returns the HTML path."""
        folder = Path(folder)
        atomic_write_text(folder / "report.md", self.markdown())
        atomic_write_text(folder / "report.html", self.html(style))
        return folder / "report.html"
