"""Command line: ``infobound bound | plot | symbolic | presets | validate | report``.

Every subcommand is a ``Command`` in the ``COMMANDS`` registry: one function adds its arguments to a
sub-parser, another runs it and returns the exit status. A new subcommand is one ``register(...)``
call; heavy modules (sympy via ``infobound.symbolic``, matplotlib via ``infobound.plotting``) are
imported inside the ``run`` function that needs them, so ``infobound presets`` stays fast.

Bad input of any kind (an argparse error or an ``InputError`` from the API) exits with status 2 and
exactly one line on stderr, ``infobound: error: <message>``; never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import textwrap

from . import __version__
from .bounds import DEFAULT_SIGMA, SEED_BOUND_KIND, sample_size, seed_bound
from .cliargs import (COMMANDS, MODES_TEXT, fill_defaults, integer_type, modes, number_type,
                      refuse_inert, register)
from .errors import InputError, Interrupted, RunFailed
from .presets import PRESETS, custom_spec, get_preset, preset_spec, select_layers
from .spec import ALL_MODES, AdapterSpec, LayerSpec, Mode, check_rank
from .validation import describe

PROG = "infobound"
WIDTH = 100  # every line of text output fits in 100 columns
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # as shells report a command ended by SIGINT
DEFAULT_PRESET = "roberta-large"
LAYERS_FORM = "NAME:D_IN:D_OUT[:RANK] entries separated by commas, e.g. q:4096:4096,v:4096:1024"
EXTRA_FORM = "NAME=COUNT[,NAME=COUNT] with integer counts >= 0, e.g. classifier=2050"
DEFAULTS = {"rank": 8, "bits": 16, "n": 10000, "sigma": DEFAULT_SIGMA, "mode": ALL_MODES}


class UsageError(Exception):
    """An argparse error, raised instead of printing the usage block and exiting."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage block: main() prints it
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per registered command."""
    parser = _Parser(
        prog=PROG,
        description="Information-theoretic generalisation bounds for low-rank adapters.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for command in COMMANDS.values():
        command.add_arguments(
            sub.add_parser(command.name, help=command.help, description=command.help, allow_abbrev=False)
        )
    return parser


def main(argv=None) -> int:
    """Run the command line; return the exit status (0 success, 2 bad input)."""
    try:
        args = build_parser().parse_args(argv)
        if args.command is None:
            raise UsageError(f"a command is required: one of {', '.join(COMMANDS)} (see {PROG} --help)")
        return COMMANDS[args.command].run(args)
    except (UsageError, InputError) as exc:
        print(f"{PROG}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_USAGE
    except RunFailed as exc:  # a worker's error mid-sweep: one line; the cause stays chained for the API
        print(f"{PROG}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    except Interrupted as exc:  # Ctrl-C during a sweep: what was kept and how to go on
        print(f"{PROG}: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:  # Ctrl-C before any work was stored
        print(f"{PROG}: interrupted; nothing was changed", file=sys.stderr)
        return EXIT_INTERRUPTED
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else 0
    except BrokenPipeError:  # output piped into `head`: not an error
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        return 0


# ------------------------------------------------------------------------------ argument types
def _layers(text: str) -> tuple[LayerSpec, ...]:
    """``name:d_in:d_out[:rank]`` entries, comma separated."""
    layers: dict[str, LayerSpec] = {}
    for item in text.split(","):
        fields = [f.strip() for f in item.split(":")]
        if len(fields) not in (3, 4) or not fields[0]:
            raise argparse.ArgumentTypeError(f"expected {LAYERS_FORM}; got {describe(item)}")
        try:
            dims = [int(f) for f in fields[1:]]  # their range is LayerSpec's to check, by name
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"D_IN, D_OUT and RANK must be integers >= 1 in {describe(item)}; expected {LAYERS_FORM}"
            ) from None
        try:
            layer = LayerSpec(fields[0], *dims)
        except InputError as exc:
            raise argparse.ArgumentTypeError(f"{exc} in {describe(item)}; expected {LAYERS_FORM}") from None
        if layer.name in layers:
            raise argparse.ArgumentTypeError(f"layer names must be unique; {layer.name!r} appears twice")
        layers[layer.name] = layer
    return tuple(layers.values())


def _extra(text: str) -> dict[str, int]:
    """``name=count`` pairs, comma separated."""
    extra: dict[str, int] = {}
    for item in text.split(","):
        name, sep, count = item.partition("=")
        name = name.strip()
        if not sep or not name or name in extra:
            raise argparse.ArgumentTypeError(f"expected {EXTRA_FORM} (names unique); got {item!r}")
        try:
            extra[name] = integer_type(0)(count)
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentTypeError(f"count of {name!r} {exc}; expected {EXTRA_FORM}") from None
    return extra


# ---------------------------------------------------------------------------- shared arguments
def _add_model_arguments(parser, *, generic: bool = False) -> None:
    """--preset | --layers, --targets, --num-classes, --extra; and --rank, --bits unless ``generic``
    (a symbolic expression keeps rank and bits as symbols)."""
    source = parser.add_mutually_exclusive_group()
    default = "a generic expression in layer sums" if generic else DEFAULT_PRESET
    source.add_argument("--preset", help=f"a model listed by '{PROG} presets' (default: {default})")
    source.add_argument("--layers", type=_layers, metavar="NAME:D_IN:D_OUT[:RANK],...",
                        help="a custom model instead of a preset; a 4th field gives a layer its own rank")
    source.add_argument("--hf-config", metavar="PATH",
                        help="a Hugging Face config.json (or its folder): the model is built on the meta "
                             "device, no weights, and --targets name its modules (needs infobound[hf])")
    parser.add_argument("--targets", help="comma-separated module names (PEFT suffix matching) or "
                        "all-linear; default: the preset's PEFT default, or every --layers layer")
    parser.add_argument("--num-classes", type=integer_type(1), metavar="C",
                        help="declare the preset's task head (C outputs) trained in every mode")
    parser.add_argument("--extra", type=_extra, metavar="NAME=COUNT[,...]",
                        help="extra parameters trained in every mode (biases, modules_to_save)")
    if not generic:
        parser.add_argument("--rank", type=integer_type(1), help="adapter rank r (default 8)")
        parser.add_argument("--bits", type=integer_type(1, 64),
                            help="bits per trained parameter q, 1 to 64 (default 16)")


def _add_data_arguments(parser) -> None:
    parser.add_argument("--n", type=integer_type(1, None), help="training examples (default 10000)")
    parser.add_argument("--sigma", type=number_type(0.0, open_low=True),
                        help=f"the loss is sigma-sub-Gaussian (default {DEFAULT_SIGMA}: a loss in [0, 1])")
    parser.add_argument("--mode", type=modes, help=f"{MODES_TEXT}, a comma list, or all (default all)")


def _build_spec(args, mode: Mode = Mode.LORA) -> AdapterSpec:
    """The ``AdapterSpec`` the options describe (a preset, or the custom ``--layers`` model)."""
    extra = dict(args.extra or {})
    rank, bits = getattr(args, "rank", 1), getattr(args, "bits", 16)  # symbolic: both stay symbols
    if getattr(args, "hf_config", None) is not None:
        from .peft_bridge import spec_from_hf_config

        if args.targets is None:
            raise InputError("--hf-config needs --targets: module names of that model (e.g. q_proj,v_proj) "
                             "or all-linear")
        if args.num_classes is not None:
            raise InputError("--num-classes needs --preset; count a head with --extra head=COUNT instead")
        return spec_from_hf_config(args.hf_config, args.targets, rank=rank or 8, mode=mode, bits=bits or 16,
                                   extra=extra)
    if args.layers is None:
        return preset_spec(DEFAULT_PRESET if args.preset is None else args.preset, args.targets, rank=rank, mode=mode,
                           bits=bits, num_classes=args.num_classes, extra=extra)
    if args.num_classes is not None:
        raise InputError("--num-classes needs --preset (a custom model has no head formula); "
                         "count the head with --extra head=COUNT instead")
    layers = args.layers
    if args.targets is not None:
        layers = select_layers(layers, args.targets, model="the --layers model")
    return custom_spec(layers, rank=rank, mode=mode, bits=bits, extra=extra)


def _describe_model(args, spec: AdapterSpec) -> str:
    """``roberta-large [query, value]: 48 adapted layers``, for headers and titles."""
    if getattr(args, "hf_config", None) is not None:
        name = f"model of {args.hf_config}"
    else:
        name = "custom model" if args.layers is not None else get_preset(
            DEFAULT_PRESET if args.preset is None else args.preset).name
    modules = ", ".join(dict.fromkeys(layer.name.rsplit(".", 1)[-1] for layer in spec.layers))
    return f"{name} [{modules}]: {len(spec.layers)} adapted layers"


# --------------------------------------------------------------------------------- formatting
def _count(value) -> str:
    """An exact count with thousands separators; scientific beyond ten digits."""
    value = int(value)
    return f"{value:,}" if value < 10**10 else f"{value:.4g}"


def _table(headers: list[str], rows: list[list[str]], left: int = 1) -> list[str]:
    """Columns two spaces apart (one if too wide); the first ``left`` left-aligned, the rest right."""
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    sep = "  " if sum(widths) + 2 * (len(widths) - 1) <= WIDTH else " "

    def line(cells):
        return sep.join(c.ljust(w) if i < left else c.rjust(w)
                        for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return [line(headers), *(line(r) for r in rows)]


def _wrap(text: str, indent: str = "") -> str:
    return textwrap.fill(text, width=WIDTH, subsequent_indent=indent, break_on_hyphens=False)


# -------------------------------------------------------------------------------------- bound
def _bound_arguments(parser) -> None:
    _add_model_arguments(parser)
    _add_data_arguments(parser)
    parser.add_argument("--gap", type=number_type(0.0, open_low=True), metavar="EPS",
                        help="add the n at which the bound equals EPS (loss units; 0 < EPS < 2σ)")
    parser.add_argument("--json", action="store_true", help="one JSON object per mode, one per line")


def _bound_record(spec: AdapterSpec, args, model: str) -> dict:
    result = seed_bound(spec, args.n, sigma=args.sigma)
    record = result.to_dict()
    d_train = spec.trainable_params  # exact integers, not the float64 of the vectorised bound
    record.update(mode=spec.mode.value, rank=spec.rank, bits=spec.bits, n=args.n,
                  trainable_params=d_train, info_bits=spec.bits * d_train,
                  factors=spec.factor_totals(), model=model)
    if args.gap is not None:
        record["gap"] = args.gap
        record["n_needed"] = math.ceil(sample_size(spec, args.gap, sigma=args.sigma))
    return record


def _run_bound(args) -> int:
    fill_defaults(args, DEFAULTS)
    base = _build_spec(args, args.mode[0])
    model = _describe_model(args, base)
    records = [_bound_record(base.with_(mode=mode), args, model) for mode in args.mode]
    if args.json:
        for record in records:
            print(json.dumps(record, allow_nan=False))
        return 0
    own_rank = any(layer.rank is not None for layer in base.layers)
    sigma = f"{args.sigma:.4g}"
    print(_wrap(f"Seed bound: {SEED_BOUND_KIND}. It bounds the expected gap over training sets "
                "and training randomness; it is not a certificate for a single training run."))
    print(_wrap(f"Model: {model}" + "".join(f"; {k} {_count(v)} trained in every mode"
                                           for k, v in base.extra.items())))
    print(_wrap(f"Assumes every trained parameter quantised to {base.bits} bits and a loss that is "
                f"σ-sub-Gaussian with σ = {sigma} (a loss in [0, 1] has σ = 0.5); the bound is "
                f"vacuous when it reaches 2σ = {2 * args.sigma:.4g}, the loss range."))
    headers = ["mode", "rank", "bits", "n", "σ", "trained params", "info bits", "bound", "vacuous"]
    if args.gap is not None:
        headers.append(f"n for gap {args.gap:.4g}")
    rows = []
    for r in records:
        rank = "-" if r["mode"] == Mode.FULL.value else f"{r['rank']}{'*' if own_rank else ''}"
        row = [r["mode"], rank, str(r["bits"]), _count(r["n"]), sigma, _count(r["trainable_params"]),
               _count(r["info_bits"]), f"{r['bound']:.4g}", "yes" if r["vacuous"] else "no"]
        if args.gap is not None:
            row.append(_count(r["n_needed"]))
        rows.append(row)
    print()
    print("\n".join(_table(headers, rows)))
    notes = ["rank '-': full fine-tuning does not depend on the rank"] if Mode.FULL in args.mode else []
    if own_rank:
        notes.append("*: layers with their own rank (4th --layers field) keep it")
    for note in notes:
        print(_wrap(note))
    return 0


# --------------------------------------------------------------------------------------- plot
MAX_POINTS = 200  # points on a plotted grid


def _plot_arguments(parser) -> None:
    _add_model_arguments(parser)
    _add_data_arguments(parser)
    parser.add_argument("--vs", choices=("rank", "n", "bits"), default="rank",
                        help="the swept quantity (default rank)")
    parser.add_argument("--ranks", metavar="LO:HI|R1,R2,...", help="ranks for --vs rank (default 1:64)")
    parser.add_argument("--ns", metavar="LO:HI|N1,N2,...",
                        help="training-set sizes for --vs n, log-spaced (default 100:1e9)")
    parser.add_argument("--bits-range", metavar="LO:HI|Q1,Q2,...",
                        help="bits per parameter for --vs bits, 1 to 64 (default 1:32)")
    parser.add_argument("--out", help="output file, .png, .svg or .pdf (default bound_vs_<vs>.png)")


# For each swept quantity, the options that would be ignored: refused instead.
_PLOT_INERT = {
    "rank": {"rank": "is swept by --vs rank; give the ranks with --ranks",
             "ns": "applies to --vs n only", "bits_range": "applies to --vs bits only"},
    "n": {"n": "is swept by --vs n; give the sizes with --ns",
          "ranks": "applies to --vs rank only", "bits_range": "applies to --vs bits only"},
    "bits": {"bits": "is swept by --vs bits; give the widths with --bits-range",
             "ranks": "applies to --vs rank only", "ns": "applies to --vs n only"},
}


def _grid(text: str, name: str, *, log: bool, high: float | None = None):
    """``LO:HI`` (every integer, or MAX_POINTS log-spaced values) or a comma list, as float64.

    Integers up to 2**53 are exact; larger training-set sizes (``--ns 1e19:1e20``) are real values.
    """
    import numpy as np

    item = integer_type(1, None) if high is None else integer_type(1, int(high))
    limit = "" if high is None else f" and <= {high:g}"
    form = (f"{name} must be LO:HI with 1 <= LO <= HI{limit}, or a comma list of integers >= 1{limit}; "
            f"got {describe(text)}")
    try:
        parts = text.split(":") if ":" in text else None
        values = [item(p) for p in (parts if parts is not None else text.split(","))]
        floats = [float(v) for v in values]
    except (argparse.ArgumentTypeError, OverflowError):
        raise InputError(form) from None
    if parts is not None and (len(values) != 2 or values[0] > values[1]):
        raise InputError(form)
    if parts is None:
        return np.unique(np.asarray(floats))
    lo, hi = values
    if not log and hi - lo < MAX_POINTS:
        return np.arange(lo, hi + 1, dtype=np.float64)
    grid = np.geomspace(floats[0], floats[1], MAX_POINTS)
    return np.unique(np.rint(grid) if hi <= 2**53 else grid)


def _run_plot(args) -> int:
    from . import plotting  # matplotlib loads only for this command

    refuse_inert(args, _PLOT_INERT[args.vs])
    fill_defaults(args, {**DEFAULTS, "rank": 1, "ns": "100:1e9", "bits_range": "1:32"})
    out = f"bound_vs_{args.vs}.png" if args.out is None else args.out
    fmt = plotting.check_output_path(out, name="--out")  # fail before any work
    spec = _build_spec(args)
    common = dict(sigma=args.sigma, modes=args.mode, model=_describe_model(args, spec))
    if args.vs == "rank":
        ranks = _grid(f"1:{min(64, spec.max_rank)}" if args.ranks is None else args.ranks, "--ranks", log=False)
        if ranks[-1] > spec.max_rank:  # name the largest rank asked for and the limiting layer
            try:
                check_rank(int(ranks[-1]), spec.layers)
            except InputError as exc:
                raise InputError(f"--ranks: {exc}") from None
        fig = plotting.plot_bound_vs_rank(spec, ranks.astype(int), args.n, bits=args.bits, **common)
    elif args.vs == "n":
        fig = plotting.plot_bound_vs_n(spec, _grid(args.ns, "--ns", log=True), bits=args.bits, **common)
    else:
        bits = _grid(args.bits_range, "--bits-range", log=False, high=64)
        fig = plotting.plot_bound_vs_bits(spec, bits.astype(int), args.n, **common)
    path = plotting.save_figure(fig, out, name="--out")
    print(f"wrote {path} ({fmt.upper()}: seed bound vs {args.vs}, modes {', '.join(map(str, args.mode))})")
    return 0


# ----------------------------------------------------------------------------------- symbolic
def _symbolic_arguments(parser) -> None:
    _add_model_arguments(parser, generic=True)
    parser.add_argument("--mode", type=modes, help=f"{MODES_TEXT}, a comma list, or all (default all)")
    style = parser.add_mutually_exclusive_group()
    style.add_argument("--latex", action="store_true", help="print LaTeX")
    style.add_argument("--plain", action="store_true", help="print sympy's one-line str form")
    parser.add_argument("--facts", action="store_true",
                        help="print the identities derived from the bound, each with ✓ (proven) or ✗")


def _run_symbolic(args) -> int:
    from . import symbolic  # sympy loads only for this command

    if args.facts:
        refuse_inert(args, {option: "does not apply to --facts (the identities are generic in every "
                            "mode and model); leave it out, or drop --facts"
                            for option in ("mode", "latex", "plain", "preset", "layers", "targets",
                                           "num_classes", "extra")})
        for fact in symbolic.derived_facts():
            mark = "✓" if fact.proven else "✗"
            print(_wrap(f"{mark} {fact.name}: {fact.statement}", indent="    "))
        return 0
    spec = None
    if args.preset is not None or args.layers is not None:
        spec = _build_spec(args)
        print(_wrap(f"Seed bound for {_describe_model(args, spec)}; symbols: rank, bits, n, sigma."))
    else:
        for option in ("targets", "num_classes", "extra"):
            if getattr(args, option) is not None:
                raise InputError(f"--{option.replace('_', '-')} needs --preset or --layers")
        print(_wrap("Seed bound, generic in the layer sums sum_d_in, sum_d_out, sum_d_in_d_out "
                    "and the extra trained parameters; symbols: rank, bits, n, sigma."))
    import sympy

    for mode in args.mode or ALL_MODES:
        if args.latex:
            text = symbolic.to_latex(mode, spec)
        elif args.plain:
            text = str(symbolic.seed_bound_expr(mode, spec))
        else:
            text = sympy.pretty(symbolic.seed_bound_expr(mode, spec), use_unicode=True, num_columns=WIDTH)
        print(f"\n{mode}:")
        print(text)
    return 0


# ------------------------------------------------------------------------------------ presets
def _presets_arguments(parser) -> None:
    parser.add_argument("name", nargs="?", help="show this preset's layer table and head formula")


def _run_presets(args) -> int:
    if args.name is None:
        for preset in PRESETS.values():
            default = ",".join(preset.default_targets) if preset.default_targets else None
            print(f"{preset.name}  {preset.description}")
            print(_wrap(f"    {len(preset.layers)} adaptable linear layers; modules: "
                        f"{', '.join(preset.module_names)}", indent="    "))
            print(f"    PEFT default targets: {default or 'none: --targets required'}")
        return 0
    preset = get_preset(args.name)
    print(f"{preset.name}: {preset.description}")
    groups: dict[tuple[str, int, int], int] = {}
    for layer in preset.layers:  # one row per module path with the block index written as *
        parts = layer.name.split(".")
        pattern = ".".join("*" if p.isdigit() else p for p in parts)
        groups[(pattern, layer.d_in, layer.d_out)] = groups.get((pattern, layer.d_in, layer.d_out), 0) + 1
    rows = [[p.rsplit(".", 1)[-1], p, f"{i} → {o}", str(c)] for (p, i, o), c in groups.items()]
    print("\n".join(_table(["module", "path", "d_in → d_out", "count"], rows, left=2)))
    default = ",".join(preset.default_targets) if preset.default_targets else "none: --targets required"
    print(f"{len(preset.layers)} adaptable linear layers; PEFT default targets: {default}")
    per_class, fixed = preset.head_params(1) - preset.head_params(0), preset.head_params(0)
    affine = all(preset.head_params(c) == per_class * c + fixed for c in (2, 10, 1000))
    formula = f"{per_class:,}·C" + (f" + {fixed:,}" if fixed else "") + " parameters, " if affine else ""
    print(_wrap(f"Task head for C classes (--num-classes C): {preset.head}; {formula}"
                f"e.g. {preset.head_params(2):,} for C = 2"))
    return 0


register("bound", "the seed bound for a model, rank, bits, n and σ, mode by mode",
         _bound_arguments, _run_bound)
register("plot", "draw the seed bound against rank, n or bits for every mode", _plot_arguments, _run_plot)
register("symbolic", "the seed bound as a sympy expression, or the identities derived from it",
         _symbolic_arguments, _run_symbolic)
register("presets", "list the preset models, or show one preset's layers", _presets_arguments, _run_presets)

from .harness import commands as _harness_commands  # noqa: E402,F401 - registers validate and report
from . import certificate_command as _certificate_command  # noqa: E402,F401 - registers certificate
from . import peft_command as _peft_command  # noqa: E402,F401 - registers peft

if __name__ == "__main__":  # python -m infobound.cli: run the imported module, where commands registered
    from infobound.cli import main as _main

    sys.exit(_main())
