"""Figures of the seed bound over an ``AdapterSpec``: against rank, sample size, or bits. No torch.

Pure functions: each takes an ``AdapterSpec`` and the grid to sweep, computes the bound with
``infobound.bounds.seed_bound`` (vectorised over the grid), and returns a ``matplotlib.figure.Figure``
drawn on the Agg canvas (no pyplot, no global state, no display). Every mode is one line whose
``gid`` is the mode's value (``"lora"``, ``"b_only"``, ...); the vacuous region, bound >= 2σ, is a
shaded band with ``gid="vacuous"``. ``save_figure`` writes a figure atomically.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator

from .bounds import DEFAULT_SIGMA, check_spec, seed_bound
from .errors import InputError
from .files import atomic_output
from .spec import ALL_MODES, AdapterSpec, Mode
from .validation import FLOAT_MAX, check_real, check_reals

FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
Y_LABEL = "seed bound on |E gen|  (loss units)"

# colour, line style, legend text per mode
MODE_STYLE: dict[Mode, tuple[str, str, str]] = {
    Mode.LORA: ("C0", "-", "lora: A and B train"),
    Mode.B_ONLY: ("C1", "-", "b_only: B trains, A frozen random"),
    Mode.A_ONLY: ("C2", "-.", "a_only: A trains, B frozen random"),
    Mode.FULL: ("C3", "--", "full: whole matrices train"),
}


# ------------------------------------------------------------------------------------- figures
def plot_bound_vs_rank(
    spec: AdapterSpec,
    ranks,
    n,
    bits=None,
    sigma=DEFAULT_SIGMA,
    modes: Iterable[Mode | str] | None = None,
    *,
    model: str | None = None,
) -> Figure:
    """The seed bound against the adapter rank at fixed ``n``, ``bits`` (default the spec's), σ.

    ``full`` does not depend on the rank: it is drawn as a flat line and the legend says so.
    """
    spec, sigma = check_spec(spec), _sigma(sigma)
    ranks = _grid("ranks", ranks)
    bits = spec.bits if bits is None else bits
    curves = {m: seed_bound(spec, n, sigma=sigma, bits=bits, rank=ranks, mode=m).bound for m in _modes(modes)}
    fixed = f"n = {_num(n)}, {_num(bits)} bits per parameter, σ = {sigma:.4g}"
    return _figure(
        ranks, curves, sigma=sigma, xlabel="adapter rank r  (per adapted layer)",
        title=f"Seed bound vs rank: {_model(spec, model)}\n{fixed}", log_base=2,
        notes={Mode.FULL: " (independent of rank: flat)"},
    )


def plot_bound_vs_n(
    spec: AdapterSpec,
    ns,
    rank=None,
    bits=None,
    sigma=DEFAULT_SIGMA,
    modes: Iterable[Mode | str] | None = None,
    *,
    model: str | None = None,
) -> Figure:
    """The seed bound against the number of training examples (log-log) at fixed rank, bits, σ."""
    spec, sigma = check_spec(spec), _sigma(sigma)
    ns = _grid("ns", ns)
    rank = spec.rank if rank is None else rank
    bits = spec.bits if bits is None else bits
    curves = {m: seed_bound(spec, ns, sigma=sigma, bits=bits, rank=rank, mode=m).bound for m in _modes(modes)}
    fixed = f"rank {_num(rank)}, {_num(bits)} bits per parameter, σ = {sigma:.4g}"
    return _figure(
        ns, curves, sigma=sigma, xlabel="training-set size n  (examples)",
        title=f"Seed bound vs sample size: {_model(spec, model)}\n{fixed}", log_base=10,
    )


def plot_bound_vs_bits(
    spec: AdapterSpec,
    bits,
    n,
    rank=None,
    sigma=DEFAULT_SIGMA,
    modes: Iterable[Mode | str] | None = None,
    *,
    model: str | None = None,
) -> Figure:
    """The seed bound against the bits each trained parameter is quantised to, at fixed rank, n, σ."""
    spec, sigma = check_spec(spec), _sigma(sigma)
    bits = _grid("bits", bits)
    rank = spec.rank if rank is None else rank
    curves = {m: seed_bound(spec, n, sigma=sigma, bits=bits, rank=rank, mode=m).bound for m in _modes(modes)}
    fixed = f"rank {_num(rank)}, n = {_num(n)}, σ = {sigma:.4g}"
    return _figure(
        bits, curves, sigma=sigma, xlabel="bits per trained parameter q  (bits)",
        title=f"Seed bound vs quantisation: {_model(spec, model)}\n{fixed}",
        log_base=2 if bits[-1] / bits[0] >= 16 else None,
    )


# ------------------------------------------------------------------------------------- saving
def check_output_path(path, *, name: str = "path") -> str:
    """The format (``"png"``, ``"svg"``, ``"pdf"``) for ``path``; ``InputError`` if it cannot be written.

    ``name`` is the parameter named in messages (the CLI passes ``"--out"``).
    """
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"{name} must end in .png, .svg or .pdf, got {str(path)!r}")
    folder = path.parent
    if not folder.is_dir():
        raise InputError(f"{name}: folder {str(folder)!r} does not exist; create it or choose another path")
    if path.is_dir():
        raise InputError(f"{name} must be a file name, but {str(path)!r} is a folder")
    return fmt


def save_figure(fig: Figure, path, *, name: str = "path") -> Path:
    """Write ``fig`` to ``path`` in the format its suffix names, replacing any existing file.

    The figure is written to a temporary file in the same folder, then moved over ``path`` with
    ``os.replace``: a failure part-way never leaves a truncated file behind.
    """
    path = Path(path)
    fmt = check_output_path(path, name=name)
    try:
        with atomic_output(path, "wb") as handle:
            fig.savefig(handle, format=fmt)
    except (FileNotFoundError, NotADirectoryError, PermissionError) as exc:
        raise InputError(f"{name}: cannot write into folder {str(path.parent)!r}: {exc.strerror}") from None
    return path


# ------------------------------------------------------------------------------------ helpers
def _figure(x, curves: dict, *, sigma, xlabel: str, title: str, log_base, notes=None) -> Figure:
    """One axes: a line per mode, log y, the vacuous band (bound >= 2σ) shaded and labelled."""
    fig = Figure(figsize=(8.0, 5.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    marker = "o" if len(x) < 2 else None
    for mode, y in curves.items():
        color, style, label = MODE_STYLE[mode]
        y = np.broadcast_to(np.asarray(y, dtype=np.float64), x.shape)
        ax.plot(x, y, color=color, linestyle=style, marker=marker, gid=mode.value,
                label=label + (notes or {}).get(mode, ""))

    threshold = 2.0 * sigma  # a bound this large says nothing about a loss of range 2σ
    values = np.concatenate([np.ravel(y) for y in curves.values()] + [[threshold]])
    ax.set_yscale("log")
    with np.errstate(over="ignore", under="ignore"):  # bounds near the ends of float64's range
        top = min(values.max() * 3.0, FLOAT_MAX)
        bottom = max(values.min() / 2.0, np.finfo(np.float64).tiny)
    ax.set_ylim(bottom, top)  # room above 2σ so the vacuous band always shows
    ax.axhspan(threshold, top, color="0.5", alpha=0.18, linewidth=0, gid="vacuous",
               label=f"vacuous: bound ≥ 2σ = {threshold:.4g}")
    ax.axhline(threshold, color="0.4", linewidth=0.8, gid="vacuous-threshold")
    ax.text(0.01, threshold * 1.15, "vacuous region (bound ≥ 2σ)", transform=ax.get_yaxis_transform(),
            fontsize="small", color="0.3", va="bottom")

    if log_base is not None and x[-1] / x[0] >= 8:
        ax.set_xscale("log", base=log_base)
        if log_base == 2:
            ax.xaxis.set_major_locator(LogLocator(base=2))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))  # 1, 2, 4, not 2^k
    ax.set_xlabel(xlabel)
    ax.set_ylabel(Y_LABEL)
    ax.set_title(title, fontsize="medium")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize="small", loc="best")
    return fig


def _grid(name: str, values) -> np.ndarray:
    arr = np.atleast_1d(check_reals(name, values, low=1.0))
    if arr.ndim != 1:
        raise InputError(f"{name} must be a 1-d sequence of numbers >= 1, got shape {arr.shape}")
    return np.sort(arr)


def _sigma(sigma) -> float:
    return check_real("sigma", sigma, 0.0, open_low=True)


def _modes(modes) -> tuple[Mode, ...]:
    if modes is None:
        return ALL_MODES
    if isinstance(modes, (str, Mode)):
        modes = [modes]
    parsed = tuple(dict.fromkeys(Mode.parse(m) for m in modes))
    if not parsed:
        raise InputError("modes must name at least one of lora, b_only, a_only, full")
    return parsed


def _model(spec: AdapterSpec, model: str | None) -> str:
    return model if model else f"{len(spec.layers)} adapted layers"


def _num(value) -> str:
    value = float(value)
    return f"{int(value):,}" if value.is_integer() and abs(value) < 1e15 else f"{value:.4g}"
