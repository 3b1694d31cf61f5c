"""``infobound certificate``: a single-run certificate on the population 0-1 error, from numbers alone.

``infobound certificate --train-error E --n N --bits C [--delta D] [--methods occam_kl,binomial]
[--test-errors K --test-n M] [--json]`` evaluates ``infobound.certificates.certificate`` (THEORY §4):
each method's bound at exactly δ, and ``best``, the smallest of the methods each evaluated at
δ / (number of methods), so that choosing the smallest after seeing the numbers is paid for by a
union bound. ``--bits 0`` is the held-out test-set bound (the binomial tail with no code).
``--test-errors K --test-n M`` adds the held-out test-set bound from K errors in M test examples.
``infobound certificate --code-length-of DIR [--json]`` instead rebuilds the itemised code length of
every adapter stored by ``infobound validate`` in DIR, from its stored grid indices, and checks it
against the length recorded when it was trained.

Registered into the CLI's registry (``infobound.cliargs``) when ``infobound.cli`` loads; scipy loads
only when the command runs, so the other commands stay fast. No torch.
"""

from __future__ import annotations

import argparse
import json
import textwrap

from .cliargs import fill_defaults, given, integer_type, number_type, register
from .errors import InputError
from .validation import describe

METHOD_NAMES = ("occam_kl", "binomial", "maurer", "catoni")
"""The methods ``infobound.certificates.certificate`` knows (its ``METHODS``), in its order."""
DEFAULT_METHODS = ("occam_kl", "binomial")
DEFAULT_DELTA = 0.05
BINOMIAL_MAX_N = 2**31 - 1
"""Largest number of examples for the binomial tail: scipy's binomial CDF (``scipy.special.bdtr``)
returns NaN beyond a C int."""
WIDTH = 100  # every line of text output fits in 100 columns

ASSUMPTION = ("the code (a prefix-free code of the given length for this hypothesis) was fixed before "
              "the training data were seen, and the n examples are i.i.d. draws from the population; a "
              "pretrained base network is part of the prior only if it never saw the training data")
HELD_OUT_ASSUMPTION = ("the hypothesis was fixed before these n examples were seen (they were never "
                       "used in training or selection), and they are i.i.d. draws from the population")
BITS_ZERO_NOTE = ("bits = 0 is the held-out test-set bound: with no code, the binomial tail is the "
                  "one-sided Clopper-Pearson upper limit, valid for examples never used in training "
                  "or selection")
_OPTIONS = {"train_error": "--train-error", "n": "--n", "bits": "--bits", "delta": "--delta"}


# ------------------------------------------------------------------------------ argument types
def _methods(text: str) -> tuple[str, ...]:
    """A comma list of certificate methods (repeats dropped), or ``all``."""
    if text.strip().lower() == "all":
        return METHOD_NAMES
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    allowed = ", ".join(METHOD_NAMES)
    if not names:
        raise argparse.ArgumentTypeError(f"must be a comma list of {allowed}, or all; got {describe(text)}")
    for name in names:
        if name not in METHOD_NAMES:
            raise argparse.ArgumentTypeError(
                f"must be a comma list of {allowed}, or all; got unknown method {describe(name)}")
    return tuple(dict.fromkeys(names))


_methods.__name__ = "method list"


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--train-error", type=number_type(0.0, 1.0), metavar="E",
                        help="training 0-1 error of the hypothesis, a fraction in [0, 1] (for the "
                             "binomial method a multiple of 1/n: errors k = E·n)")
    parser.add_argument("--n", type=integer_type(1), metavar="N",
                        help="training examples the error was measured on")
    parser.add_argument("--bits", type=integer_type(0), metavar="C",
                        help="length in bits of the hypothesis under a prefix-free code fixed before "
                             "seeing the data (an integer >= 0; round a code length up); 0 gives the "
                             "held-out test-set bound")
    parser.add_argument("--delta", type=number_type(0.0, 1.0, open_low=True, open_high=True),
                        default=None, metavar="D",
                        help=f"failure probability, in (0, 1) (default {DEFAULT_DELTA})")
    parser.add_argument("--methods", type=_methods, default=DEFAULT_METHODS, metavar="M1,M2",
                        help=f"comma list of {', '.join(METHOD_NAMES)}, or all (default "
                             f"{','.join(DEFAULT_METHODS)}); best pays a union bound over them")
    parser.add_argument("--test-errors", type=integer_type(0), metavar="K",
                        help="errors on held-out test examples; with --test-n also prints the held-out "
                             "test-set bound at the same δ")
    parser.add_argument("--test-n", type=integer_type(1), metavar="M",
                        help="held-out test examples, never used in training or selection (needs "
                             "--test-errors)")
    parser.add_argument("--code-length-of", metavar="DIR",
                        help="instead: the itemised code length of every adapter stored by infobound "
                             "validate in DIR, rebuilt from its stored grid indices")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of the text")


# --------------------------------------------------------------------------------- checks
def _check_options(args) -> None:
    """What argparse's types cannot see: pairs of options and the binomial method's range."""
    missing = [_OPTIONS[k] for k in ("train_error", "n", "bits") if not given(args, k)]
    if missing:
        raise InputError(f"{missing[0]} is required (give --train-error, --n and --bits, or "
                         f"--code-length-of DIR)")
    if given(args, "test_errors") and not given(args, "test_n"):
        raise InputError("--test-errors needs --test-n M, the number of held-out test examples")
    if given(args, "test_n") and not given(args, "test_errors"):
        raise InputError("--test-n needs --test-errors K, the errors on those held-out test examples")
    if given(args, "test_n") and args.test_errors > args.test_n:
        raise InputError(f"--test-errors must be an integer in [0, --test-n] = [0, {args.test_n:,}], "
                         f"got {args.test_errors:,}")
    if given(args, "test_n") and args.test_n > BINOMIAL_MAX_N:
        raise InputError(f"--test-n must be an integer in [1, {BINOMIAL_MAX_N:,}] (the binomial CDF's "
                         f"range), got {args.test_n:,}")
    if "binomial" in args.methods and args.n > BINOMIAL_MAX_N:
        raise InputError(f"--n must be an integer in [1, {BINOMIAL_MAX_N:,}] for the binomial method "
                         f"(the binomial CDF's range), got {args.n:,}; leave binomial out of --methods")


def _as_option_message(message: str) -> str:
    """The API's message with its parameter named as the option the user wrote."""
    name, sep, rest = message.partition(" must ")
    if not sep or name not in _OPTIONS:
        return message
    text = f"{_OPTIONS[name]} must {rest}"
    if name == "train_error" and "binomial" in rest:
        text += "; give the error as a count over n (k/n), or leave binomial out of --methods"
    return text


# ------------------------------------------------------------------------------------ output
def _bound_text(value: float) -> str:
    return "1 (vacuous)" if value >= 1.0 else f"{value:.6g}"


def _statement(method: str, k: int | None, grid_size: int) -> str:
    if method == "occam_kl":
        return "Occam-kl: kl(train error ‖ bound) = (bits · ln 2 + ln(1/δ)) / n"
    if method == "binomial":
        return f"binomial tail: P[Bin(n, bound) ≤ {k:,}] = δ · 2^-bits"
    if method == "maurer":
        return "PAC-Bayes-kl: kl(train error ‖ bound) = (bits · ln 2 + ln(2√n/δ)) / n"
    return f"Catoni, the best C of a {grid_size}-point grid, each C at δ/{grid_size}"


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    """Columns two spaces apart; the first left-aligned, the numbers right-aligned, the last left."""
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    last = len(headers) - 1

    def line(cells):
        return "  ".join(c.ljust(w) if i in (0, last) else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return [line(headers), *(line(r) for r in rows)]


_KEEP_TOGETHER = (" = ", " − ", "≥ ")  # never broken across lines: "δ = 0.05", "1 − δ", "≥ 0.95"


def _wrap(text: str) -> str:
    for glue in _KEEP_TOGETHER:
        text = text.replace(glue, glue.replace(" ", "\u00a0"))
    return textwrap.fill(text, width=WIDTH, break_on_hyphens=False).replace("\u00a0", " ")


def _text(cert, record: dict, grid_size: int) -> list[str]:
    k = round(cert.train_error * cert.n) if "binomial" in cert.methods else None
    count = len(cert.methods)
    what = ("High-probability certificate (bits = 0: the held-out test-set bound): with probability "
            f"≥ 1 − δ = {1 - cert.delta:g} over the draw of the n = {cert.n:,} examples"
            if cert.bits == 0 else
            f"High-probability certificate: with probability ≥ 1 − δ = {1 - cert.delta:g} over the "
            f"draw of the n = {cert.n:,} training examples")
    lines = [_wrap(
        f"{what}, the population 0-1 error of the trained hypothesis "
        f"is at most {_bound_text(cert.best)} (best below; δ = {cert.delta:g}, bits = {cert.bits:,}, "
        f"train error {cert.train_error:g}" + (f" = {k:,}/{cert.n:,}" if k is not None else "") + ")."),
        ""]
    rows = [[m, f"{cert.delta:g}", _bound_text(getattr(cert, m)), _statement(m, k, grid_size)]
            for m in cert.methods]
    why = (f"{cert.best_method}: the smallest of {count} methods, each at δ/{count} (union bound)"
           if count > 1 else f"{cert.best_method}: one method, no choice to pay for")
    rows.append(["best", f"{record['best_delta']:g}", _bound_text(cert.best), why])
    lines += _table(["method", "δ used", "bound", "statement (bound at δ used)"], rows)
    lines.append("")
    lines.append(_wrap(f"Assumes {record['assumption']}. Each method's row holds at its own δ; only "
                       "best pays for choosing the smallest after seeing the numbers."))
    if cert.bits == 0:
        lines.append(_wrap(f"Note: {BITS_ZERO_NOTE}."))
    if "test_set_bound" in record:
        lines.append(_wrap(
            f"Held-out test-set bound: {record['test_errors']:,} errors in {record['test_n']:,} test "
            f"examples never used in training or selection give a population 0-1 error of at most "
            f"{_bound_text(record['test_set_bound'])} with probability ≥ {1 - cert.delta:g} over the "
            f"test draw (one-sided Clopper-Pearson, δ = {cert.delta:g}): the best any certificate "
            f"could do with that many examples."))
    return lines


# --------------------------------------------------------------------------------------- run
def _run(args) -> int:
    from . import certificates  # scipy loads only for this command

    if given(args, "code_length_of"):
        return _code_lengths(args)
    fill_defaults(args, {"delta": DEFAULT_DELTA})
    _check_options(args)
    try:
        cert = certificates.certificate(args.train_error, args.n, args.bits, args.delta, args.methods)
    except InputError as exc:
        raise InputError(_as_option_message(str(exc))) from None
    record = cert.to_dict()
    record["best_delta"] = cert.delta / len(cert.methods)
    record["assumption"] = HELD_OUT_ASSUMPTION if cert.bits == 0 else ASSUMPTION
    if cert.bits == 0:
        record["note"] = BITS_ZERO_NOTE
    if given(args, "test_n"):
        record.update(test_errors=args.test_errors, test_n=args.test_n,
                      test_set_bound=certificates.test_set_bound(args.test_errors, args.test_n, cert.delta))
    if args.json:
        print(json.dumps(record, allow_nan=False))
        return 0
    print("\n".join(_text(cert, record, len(certificates.DEFAULT_CATONI_GRID))))
    return 0


def _code_lengths(args) -> int:
    """``--code-length-of DIR``: every stored adapter's itemised code, grouped by configuration."""
    from .cliargs import refuse_inert
    from .harness.codes import stored_code_lengths
    from .validation import check_path

    why = "does nothing with --code-length-of DIR (it reads the stored adapters)"
    refuse_inert(args, dict.fromkeys(("train_error", "n", "bits", "delta", "test_errors", "test_n"), why))
    if args.methods != DEFAULT_METHODS:
        raise InputError("--methods does nothing with --code-length-of DIR (it reads the stored adapters)")
    folder = check_path("--code-length-of", args.code_length_of)
    if not folder.is_dir():
        raise InputError(f"--code-length-of must be a folder written by infobound validate; "
                         f"{str(folder)!r} is not a folder")
    if not (folder / "records.sqlite").is_file():
        raise InputError(f"--code-length-of must be a folder written by infobound validate; no "
                         f"records.sqlite in {str(folder)!r}")
    codes = stored_code_lengths(folder)
    bad = [c for c in codes if not c.matches]
    if args.json:
        print(json.dumps({"runs": [{**{k: c.record.get(k) for k in ("key", "kind", "task", "mode", "rank", "n",
                                                                     "seed", "bits", "clip")},
                                    "grid": c.grid, "recorded_bits": c.recorded_bits, "matches": c.matches,
                                    "code": c.code.to_dict()} for c in codes],
                          "mismatches": len(bad)}, allow_nan=False))
        return 0 if not bad else 1
    groups: dict = {}
    for c in codes:
        r = c.record
        groups.setdefault((r["task"], r["mode"], r["rank"], r["n"], r["bits"], c.grid), []).append(c)
    lines = [_wrap(f"Code lengths of {len(codes):,} stored adapters in {str(folder)!r}: a prefix-free code "
                   "of each run's trained, quantised tensors (range-coded grid indices, with the shapes, "
                   "the probability table and the frozen factor's seed), rebuilt from the stored indices; "
                   "mean bits per item over the runs of each configuration."), ""]
    for (task, mode, rank, n, bits, grid), runs in groups.items():
        totals = [c.code.total_bits for c in runs]
        items: dict[str, list[float]] = {}
        for c in runs:
            for key, value in c.code.items.items():
                items.setdefault(key, []).append(value)
        if grid == "sweep":
            where = f"the sweep's grid ({bits} bits, clip {runs[0].record['clip']:g})"
        else:
            chosen = sorted({(c.code.grids[next(iter(c.code.grids))].bits, c.code.grids[next(iter(c.code.grids))].clip)
                             for c in runs})
            where = "a grid chosen per run (" + ", ".join(f"{b} bits clip {c:g}" for b, c in chosen) + ")"
        lines.append(f"{task} {mode} rank {rank} n {n:,}, {where}: {len(runs)} run(s), code length "
                     f"{min(totals):,.0f}–{max(totals):,.0f} bits, mean {sum(totals) / len(totals):,.1f}")
        rows = [[key, f"{sum(v) / len(v):,.1f}"] for key, v in items.items()]
        lines += ["  " + line for line in _table(["item", "mean bits"], rows + [["total", f"{sum(totals) / len(totals):,.1f}"]])]
        lines.append("")
    if bad:
        lines.append(f"warning: {len(bad)} stored run(s) rebuild to a length other than the recorded one")
    print("\n".join(lines).rstrip())
    return 0 if not bad else 1


register("certificate", "a single-run certificate on the population 0-1 error (Occam-kl, binomial "
         "tail, ...) from the training error, n and the code length in bits", _arguments, _run)
