"""Figures of run records: gap against rank and against n, test error per mode, tightness; PNG files.

Each plot function takes records (as ``report.summarize`` does) that share the fixed quantities of
the plot, and returns a ``matplotlib.figure.Figure`` with the Agg canvas (pyplot is never touched);
``write_plots`` draws every plot the records support, one file per (task, n or rank, bits), each
written atomically like the other report files. Means carry Student-t intervals (``stats.mean_ci``);
slopes in n come from ``stats.loglog_slope``. ``plot_tightness`` draws the rows of
``tightness.tightness_rows`` (every bound beside what it bounds); ``write_plots`` adds those files
only when given ``tightness=``.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..errors import InputError
from ..files import safe_name, write_file
from .rows import MODE_ORDER, ConfigRow, config_rows, normalize_records, series
from .stats import Interval, loglog_slope
from .tightness import BOUND_KINDS, Tightness, TightRow


class PlotFiles(list):
    """The written plot paths (a list of ``Path``); ``skipped`` says which plots were not drawn, why."""

    def __init__(self, paths=(), skipped=()):
        super().__init__(paths)
        self.skipped: list[str] = list(skipped)


def _errbar(ax, x, intervals: list[Interval], label: str, **kw):
    """Means with CI half-widths as error bars (none where there is no CI)."""
    y = [i.mean for i in intervals]
    err = np.nan_to_num([i.half_width for i in intervals])
    return ax.errorbar(x, y, yerr=err, capsize=3, marker="o", label=label, **kw)


def _legend(ax) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def _rank_axis(ax, configs: list[ConfigRow]) -> None:
    ranks = sorted({c.rank for c in configs if c.rank > 0})
    ax.set_xscale("log", base=2)
    ax.set_xticks(ranks, [str(r) for r in ranks])
    ax.minorticks_off()


def _figure(ncols: int = 1) -> tuple[Figure, list]:
    fig = Figure(figsize=(4.2 * ncols + 0.8, 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, list(fig.subplots(1, ncols, squeeze=False)[0])


def _one(configs: list[ConfigRow], keys: tuple[str, ...], what: str) -> None:
    if not configs:
        raise InputError(f"records for {what} must contain at least one usable run")
    for k in keys:
        values = {getattr(c, k) for c in configs}
        if len(values) > 1:
            raise InputError(f"records for {what} must share one {k}, got {sorted(values, key=str)}; "
                             "filter them first (write_plots does this)")


def _gap_vs_rank(configs: list[ConfigRow], pct: str) -> Figure:
    _one(configs, ("task", "n", "bits"), "a gap-vs-rank plot")
    lines = series(configs, "rank")
    modes = list(dict.fromkeys(m for m, _, _ in lines))
    if not modes:
        raise InputError("records for a gap-vs-rank plot need a mode with a rank (full has none)")
    fig, axes = _figure(len(modes))
    for ax, mode in zip(axes, modes):
        ax.set(title=mode, xlabel="rank r", ylabel="gap (test − train)")
        for _, label, cs in (s for s in lines if s[0] == mode):
            tag = label[len(mode):]
            _errbar(ax, [c.rank for c in cs], [c.gap for c in cs], f"mean gap ({pct} CI){tag}")
            ok = [c for c in cs if c.applicable]
            if ok:
                b = np.array([c.bound for c in ok])
                ax.plot([c.rank for c in ok], np.minimum(b, 1.0), "--", color="tab:red",
                        label=f"seed bound (q={ok[0].bits}){tag}")
                if np.any(b >= 1.0):
                    ax.annotate(f"seed bound ≥ 1 (vacuous), clipped at 1; max {b.max():.3g}",
                                (0.02, 0.55), xycoords="axes fraction", fontsize=7)
            else:
                ax.annotate(cs[0].note, (0.02, 0.55), xycoords="axes fraction", fontsize=7)
        ax.axhline(0.0, color="grey", lw=0.5)
        _rank_axis(ax, configs)
        _legend(ax)
    fig.suptitle(f"{configs[0].task}: gap vs rank, n={configs[0].n}")
    return fig


def _gap_vs_n(configs: list[ConfigRow], pct: str, n_boot: int) -> Figure:
    _one(configs, ("task", "rank", "bits"), "a gap-vs-n plot")
    fig, (ax,) = _figure(1)
    ax.set_xscale("log")
    ax.set_yscale("log", nonpositive="clip")
    for _, label, cs in series(configs, "n"):
        pos, color = [c for c in cs if c.gap.mean > 0], None
        if pos:
            bars = _errbar(ax, [c.n for c in pos], [c.gap for c in pos], f"{label}: mean gap ({pct} CI)")
            color = bars.lines[0].get_color()
        if len(pos) < len(cs):
            ax.annotate(f"{label}: {len(cs) - len(pos)} point(s) with mean gap ≤ 0 not shown",
                        (0.02, 0.02), xycoords="axes fraction", fontsize=7)
        if len(cs) >= 2:
            s = loglog_slope([c.n for c in cs], [list(c.gap_by_seed.values()) for c in cs],
                             n_boot=n_boot)
            if math.isfinite(s.slope):
                xs = np.array([cs[0].n, cs[-1].n], dtype=float)
                ci = f"[{s.low:+.2f}, {s.high:+.2f}]" if math.isfinite(s.low) else "(no CI)"
                ax.plot(xs, np.exp(s.intercept) * xs**s.slope, ":", color=color,
                        label=f"{label} fit: slope {s.slope:+.2f} {ci}")
    ax.set(xlabel="n (training examples)", ylabel="gap (test − train)",
           title=f"{configs[0].task}: gap vs n, rank {configs[0].rank} (theory: slope −1/2)")
    _legend(ax)
    return fig


def _test_error(configs: list[ConfigRow], pct: str) -> Figure:
    _one(configs, ("task", "n", "bits"), "a test-error plot")
    fig, (ax,) = _figure(1)
    for _, label, cs in series(configs, "rank"):
        _errbar(ax, [c.rank for c in cs], [c.test for c in cs], label)
    for c in (c for c in configs if c.rank <= 0):  # full fine-tuning has no rank: a level line
        ax.axhline(c.test.mean, ls="--", color="grey", label=f"{c.mode} (no rank): {c.test.mean:.3g}")
    _rank_axis(ax, configs)
    ax.set(xlabel="rank r", ylabel=f"mean {configs[0].metric} ({pct} CI)",
           title=f"{configs[0].task}: {configs[0].metric} per mode, n={configs[0].n}")
    _legend(ax)
    return fig


def plot_gap_vs_rank(records, confidence: float = 0.95) -> Figure:
    """Mean gap (CI error bars) against rank with the seed-bound curve, a panel per mode.

    The records must share one task, n and bits."""
    return _gap_vs_rank(config_rows(normalize_records(records), confidence, []), f"{100 * confidence:g}%")


def plot_gap_vs_n(records, confidence: float = 0.95, n_boot: int = 2000) -> Figure:
    """Mean gap against n on log-log axes with each line's fitted slope; one task, rank and bits."""
    configs = config_rows(normalize_records(records), confidence, [])
    return _gap_vs_n(configs, f"{100 * confidence:g}%", n_boot)


def plot_test_error(records, confidence: float = 0.95) -> Figure:
    """Mean test error (test loss for mse) with CI error bars per mode against rank; one task, n, bits."""
    return _test_error(config_rows(normalize_records(records), confidence, []), f"{100 * confidence:g}%")


TIGHT_STYLE = {"seed": ("tab:red", "s"), "fast": ("tab:orange", "D"), "cert": ("tab:purple", "^"),
               "cmi": ("tab:green", "P"), "cert*": ("tab:pink", "v")}
"""Colour and marker of each bound kind in ``plot_tightness``."""


def _tight_series(rows: list[TightRow]) -> list[tuple[str, list[tuple]]]:
    """One mode's configurations split into lines with one configuration per rank: (tag, configs).

    All in one line when the ranks do not repeat; else by init and α/r; else by init and α."""
    configs = sorted({r.config for r in rows}, key=lambda c: tuple(map(str, c)))
    def scale(c):
        return None if c[5] is None or c[2] <= 0 else round(c[5] / c[2], 12)
    def text(name, v):
        return f"{name}={v:g}" if isinstance(v, float) else f"{name}={v}"
    levels = ((lambda c: None, lambda k: ""),
              (lambda c: (c[6], scale(c)), lambda k: f"{text('init', k[0])}, {text('α/r', k[1])}"),
              (lambda c: (c[6], c[5]), lambda k: f"{text('init', k[0])}, {text('α', k[1])}"))
    for f, name in levels:
        groups: dict = {}
        for c in configs:
            groups.setdefault(f(c), []).append(c)
        if all(len({c[2] for c in g}) == len(g) for g in groups.values()) or f is levels[-1][0]:
            return [("" if k is None else f" ({name(k)})", g) for k, g in groups.items()]
    return []  # unreachable: the last level always returns


def plot_tightness(tightness: Tightness, task=None, n=None, bits=None) -> Figure:
    """Every bound kind beside the measured mean gap and mean test error, against rank; a panel per mode.

    ``tightness`` comes from ``tightness.tightness_rows``; ``task``, ``n`` and ``bits`` pick one
    (task, n, bits) when its rows hold several. Log y axis with a dashed line at 1 (vacuous); values
    ≤ 0 (a mean gap below zero) cannot sit on it and are drawn as open triangles at the axis bottom,
    said in the legend and the panel title. Modes without a rank (full) are left out (said in the title).
    """
    if not isinstance(tightness, Tightness):
        raise InputError(f"tightness must be a Tightness (from tightness_rows), got "
                         f"{type(tightness).__name__}")
    pick = {k: v for k, v in (("task", task), ("n", n), ("bits", bits)) if v is not None}
    rows = [r for r in tightness.rows if all(getattr(r, k) == v for k, v in pick.items())]
    cells = sorted({(r.task, r.n, r.bits) for r in rows}, key=str)
    if len(cells) != 1:
        have = sorted({(r.task, r.n, r.bits) for r in tightness.rows}, key=str)
        raise InputError(f"a tightness plot needs rows of exactly one (task, n, bits); "
                         f"{'none match' if not cells else f'{len(cells)} match'} {pick or 'no selection'} "
                         f"(the rows hold {have or 'none'}); pass task=, n= and bits= to choose")
    (task, n, bits), = cells
    ranked = [r for r in rows if r.rank > 0]
    modes = [m for m in MODE_ORDER if any(r.mode == m for r in ranked)]
    if not modes:
        raise InputError("a tightness plot needs a mode with a rank (full has none)")
    unranked = sorted({r.mode for r in rows if r.rank <= 0})
    fig, axes = _figure(len(modes))
    plotted, bottoms = [], []  # positive values; (ax, ranks, colour, marker, label) of values <= 0
    for ax, mode in zip(axes, modes):
        below = 0
        for tag, configs in _tight_series([r for r in ranked if r.mode == mode]):
            mine = [r for r in ranked if r.config in set(configs)]
            sweep_grid = [r for r in mine if r.kind == "cert" and r.grid != "chosen"]
            chosen = [r for r in mine if r.kind == "cert" and r.grid == "chosen"]
            lines = [(f"{kind} bound", sweep_grid if kind == "cert" else [r for r in mine if r.kind == kind],
                      "bound", "-", TIGHT_STYLE[kind]) for kind in BOUND_KINDS]
            lines.append(("cert* bound (grid chosen per run)", chosen, "bound", "-", TIGHT_STYLE["cert*"]))
            gap_rows = [r for r in mine if r.kind == "seed"] or [r for r in mine if r.kind == "fast"]
            lines += [("mean gap", gap_rows, "measured", ":", ("black", "o")),
                      ("mean gap (cmi runs)", [r for r in mine if r.kind == "cmi"], "measured", ":",
                       ("tab:olive", "o")),
                      ("mean test error", sweep_grid, "measured", "--", ("tab:blue", "o")),
                      ("test-set bound", [r for r in sweep_grid if r.test_set_bound is not None],
                       "test_set_bound", "-.", ("tab:cyan", "x")),
                      ("mean test error (cert* grid)", chosen, "measured", "--", ("tab:brown", "o"))]
            for label, line, attr, ls, (color, marker) in lines:
                pts = sorted((r.rank, float(getattr(r, attr))) for r in line
                             if getattr(r, attr) is not None and math.isfinite(getattr(r, attr)))
                pos = [y for _, y in pts if y > 0]
                if pos:  # a value <= 0 breaks the line (NaN) rather than being bridged
                    ax.plot([x for x, _ in pts], [y if y > 0 else math.nan for _, y in pts], ls=ls,
                            marker=marker, color=color, label=label + tag)
                    plotted += pos
                low = [x for x, y in pts if y <= 0]
                if low:
                    below += len(low)
                    bottoms.append((ax, low, color, marker, f"{label}{tag} ≤ 0 (at the bottom)"))
        ax.axhline(1.0, ls="--", color="grey", lw=0.8, label="vacuous (1)")
        title = mode if not below else f"{mode}: {below} value(s) ≤ 0 drawn at the bottom (▽)"
        ax.set(title=title, xlabel="rank r", ylabel="bound or measured value (0-1 loss)")
        ax.set_yscale("log")
        _rank_axis(ax, ranked)
    y_low = min(plotted + [1.0]) / 3.0
    y_high = max(plotted + [1.0]) * 1.5
    for ax in axes:
        ax.set_ylim(y_low, y_high)
    for ax, xs, color, marker, label in bottoms:
        ax.plot(xs, [y_low * 1.15] * len(xs), ls="none", marker="v", mfc="none", color=color,
                label=label)
    for ax in axes:  # below the panel: a legend of up to ten entries would hide the points
        ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    fig.set_figheight(5.6)
    gone = f"; {', '.join(unranked)} (no rank) not shown" if unranked else ""
    fig.suptitle(f"{task}: every bound beside what it bounds, n={n}, q={bits}{gone}")
    return fig


def _save(fig: Figure, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    write_file(path, buf.getvalue())
    return path


def write_plots(records, out_dir, confidence: float = 0.95, n_boot: int = 2000,
                tightness: Tightness | None = None) -> PlotFiles:
    """Every plot the records support, one file per (task, n or rank, bits); see ``.skipped``.

    With ``tightness`` (from ``tightness.tightness_rows``) also one ``tightness_<task>_n<n>_q<bits>.png``
    per (task, n, bits) of its rows."""
    if tightness is not None and not isinstance(tightness, Tightness):
        raise InputError(f"tightness must be a Tightness (from tightness_rows) or None, got "
                         f"{type(tightness).__name__}")
    configs = config_rows(normalize_records(records), confidence, [])
    out, pct, files = Path(out_dir), f"{100 * confidence:g}%", PlotFiles()
    cells: dict[tuple, list[ConfigRow]] = {}
    for c in configs:
        cells.setdefault(("n", c.task, c.n, c.bits), []).append(c)
        cells.setdefault(("rank", c.task, c.rank, c.bits), []).append(c)
    for (fixed, task, value, bits), cs in sorted(cells.items(), key=lambda kv: str(kv[0])):
        tag = f"{safe_name(task)}_{'n' if fixed == 'n' else 'r'}{value}_q{bits or 'none'}"
        if fixed == "n":
            files.append(_save(_test_error(cs, pct), out / f"test_error_{tag}.png"))
            if len({c.rank for c in cs if c.rank > 0}) >= 2:
                files.append(_save(_gap_vs_rank(cs, pct), out / f"gap_vs_rank_{tag}.png"))
            else:
                files.skipped.append(f"gap vs rank for {tag}: fewer than 2 ranks")
        elif len({c.n for c in cs}) >= 2:
            files.append(_save(_gap_vs_n(cs, pct, n_boot), out / f"gap_vs_n_{tag}.png"))
        else:
            files.skipped.append(f"gap vs n for {tag}: one n only ({cs[0].n})")
    for task, n, bits in sorted({(r.task, r.n, r.bits) for r in (tightness.rows if tightness else ())},
                                key=str):
        tag = f"{safe_name(task)}_n{n}_q{bits if bits is not None else 'none'}"
        if not any(r.rank > 0 for r in tightness.rows if (r.task, r.n, r.bits) == (task, n, bits)):
            files.skipped.append(f"tightness for {tag}: no mode with a rank (full has none)")
            continue
        files.append(_save(plot_tightness(tightness, task, n, bits), out / f"tightness_{tag}.png"))
    return files
