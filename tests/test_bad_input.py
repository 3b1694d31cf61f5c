"""Bad input, thrown at every public entry point: a ValueError naming the parameter (API) or exit 2 with
one stderr line (CLI); never a traceback, never a silently wrong number, nothing stored touched.

Classes (one section each): 1 overflow and underflow; 2 wrong types and values at the API; 3 preset
heads against their architectures written out by hand; 6 options that would do nothing; 7 rates that
agree too easily; 8 the import structure (no circles, no private names across modules). The CLI side
of every class is thrown parameter by parameter. Faults (kills, Ctrl-C, damaged stores, missing
extras) are in test_faults.py.
"""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import mpmath
import numpy as np
import pytest

import infobound as ib
from cli_helpers import one_error_line, run_cli, snapshot
from infobound import symbolic
from infobound.harness.report import summarize
from infobound.harness.stats import mean_ci
from infobound.harness.sweep import SweepConfig
from infobound.harness.validate import validate, write_report
from infobound.plotting import plot_bound_vs_n, plot_bound_vs_rank
from infobound.spec import LayerSpec, Mode

PACKAGE = Path(ib.__file__).resolve().parent
HUGE = 10**400  # an integer no float64 holds
HUGE_TEXT = "1" + "0" * 400
SPEC = ib.preset_spec("roberta-base", rank=8, bits=16)


# ---------------------------------------------------------------------------------- 1. overflow
def hand_bound(sigma: float, bits: int, d_train: int, n: float) -> mpmath.mpf:
    """sqrt(2 σ² ln2 · q · d_train / n) in 50-digit arithmetic: no overflow, no underflow."""
    mpmath.mp.dps = 50
    return mpmath.sqrt(2 * mpmath.mpf(sigma) ** 2 * mpmath.log(2) * bits * d_train / mpmath.mpf(n))


@pytest.mark.parametrize("sigma", [1e-300, 1e-150, 0.5, 1e150, 1e200, 1e300])
def test_extreme_sigma_gives_the_exact_finite_bound(sigma):
    got = ib.bound(SPEC, n=1000, sigma=sigma, mode="b_only")
    want = hand_bound(sigma, 16, SPEC.with_(mode="b_only").trainable_params, 1000)
    assert math.isfinite(got.bound) and got.bound > 0
    assert got.bound == pytest.approx(float(want), rel=1e-12)
    assert got.vacuous is (want >= 2 * mpmath.mpf(sigma))


@pytest.mark.parametrize("sigma", [1e-320, 5e-324])
def test_a_bound_below_float64_is_refused_not_zero(sigma):
    with pytest.raises(ValueError, match="sigma"):
        ib.bound(SPEC, n=1000, sigma=sigma)


@pytest.mark.parametrize("n", [1e19, 1e100, 1e300])
def test_huge_n_gives_the_exact_bound(n):
    got = ib.bound(SPEC, n=n, mode="lora").bound
    assert got == pytest.approx(float(hand_bound(0.5, 16, SPEC.trainable_params, n)), rel=1e-12)


@pytest.mark.parametrize("gap, words", [(1e-200, ["gap must be at least"]), (1.0, ["(0, 2·sigma)"]),
                                        (1e300, ["(0, 2·sigma)"]), (0.0, ["gap", "> 0"]),
                                        (math.nan, ["gap"]), (-0.1, ["gap"])])
def test_sample_size_refuses_gaps_that_ask_nothing(gap, words):
    with pytest.raises(ValueError) as err:
        ib.sample_size(SPEC, gap)
    for word in words:
        assert word in str(err.value)


def test_sample_size_at_extreme_sigma_is_exact():
    d = SPEC.trainable_params
    for sigma, gap in ((1e200, 1e199), (1e-200, 1e-201)):
        want = 2 * mpmath.mpf(sigma) ** 2 * mpmath.log(2) * 16 * d / mpmath.mpf(gap) ** 2
        assert ib.sample_size(SPEC, gap, sigma=sigma) == pytest.approx(float(want), rel=1e-12)


def test_cli_json_at_sigma_1e200_is_valid_json_with_a_finite_bound():
    status, out, err = run_cli(["bound", "--sigma", "1e200", "--json", "--mode", "b_only", "--preset",
                                "roberta-base"])
    assert status == 0 and err == ""
    record = json.loads(out)
    want = hand_bound(1e200, 16, SPEC.with_(mode="b_only").trainable_params, 10000)
    assert record["bound"] == pytest.approx(float(want), rel=1e-12)


def test_plot_far_beyond_int64_and_at_huge_sigma(tmp_path):
    for argv in (["plot", "--vs", "n", "--ns", "1e19:1e20"], ["plot", "--sigma", "1e200"]):
        out = tmp_path / f"{len(argv)}.png"
        status, stdout, err = run_cli([*argv, "--out", str(out)])
        assert status == 0, err
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


CLI_OVERFLOW = [  # (argv, words of the one error line)
    (["bound", "--gap", "1e-200"], ["gap must be at least"]),
    (["bound", "--gap", "1e300"], ["gap must be in (0, 2·sigma)"]),
    (["bound", "--sigma", "1e-320"], ["sigma"]),
    (["bound", "--n", HUGE_TEXT], ["n must", "401 digits"]),
    (["bound", "--extra", f"head={HUGE_TEXT}"], ["--extra", "head"]),
    (["bound", "--preset", "llama-2-7b", "--num-classes", HUGE_TEXT], ["--num-classes"]),
    (["bound", "--layers", f"q:{HUGE_TEXT}:4"], ["d_in of layer 'q'"]),
    (["bound", "--rank", HUGE_TEXT], ["--rank"]),
    (["bound", "--bits", HUGE_TEXT], ["--bits"]),
    (["plot", "--vs", "n", "--ns", f"1:{'9' * 400}"], ["--ns"]),
    (["plot", "--ranks", f"1:{HUGE_TEXT}"], ["--ranks"]),
    (["validate", "--seeds", HUGE_TEXT], ["--seeds", "1,000,000"]),
    (["validate", "--steps", HUGE_TEXT], ["--steps"]),
    (["validate", "--n", HUGE_TEXT], ["--n"]),
    (["validate", "--ranks", HUGE_TEXT], ["--ranks"]),
    (["validate", "--lr", "1e400"], ["--lr", "finite"]),
]


@pytest.mark.parametrize("argv, words", CLI_OVERFLOW, ids=[" ".join(a)[:40] for a, _ in CLI_OVERFLOW])
def test_cli_refuses_what_float64_cannot_hold(argv, words, tmp_path):
    if argv[0] == "validate":
        argv = [*argv, "--out", str(tmp_path / "out")]
    line = one_error_line(*run_cli(argv))
    for word in words:
        assert word in line, (word, line)
    assert len(line) < 400  # a 400-digit value is abbreviated, not echoed
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------- 2. every API parameter, every class
GENERIC = {"zero": 0, "negative": -1, "nan": math.nan, "inf": math.inf, "-inf": -math.inf, "huge": HUGE,
           "none": None, "string": "ten", "bool": True, "empty": [], "dict": {"a": 1}}


def _sweep(**kw):
    return SweepConfig(**kw)


API = [  # (id, call with the bad value, word the message must hold, generic values that are valid here)
    ("bound.spec", lambda v: ib.bound(v, n=100), "spec", ()),
    ("bound.n", lambda v: ib.bound(SPEC, n=v), "n must", ()),
    ("bound.sigma", lambda v: ib.bound(SPEC, 100, sigma=v), "sigma", ()),
    ("bound.bits", lambda v: ib.bound(SPEC, 100, bits=v), "bits", ("none",)),
    ("bound.rank", lambda v: ib.bound(SPEC, 100, rank=v), "rank", ("none",)),
    ("bound.mode", lambda v: ib.bound(SPEC, 100, mode=v), "mode", ("none",)),
    ("sample_size.spec", lambda v: ib.sample_size(v, 0.1), "spec", ()),
    ("sample_size.gap", lambda v: ib.sample_size(SPEC, v), "gap", ()),
    ("sample_size.sigma", lambda v: ib.sample_size(SPEC, 0.1, sigma=v), "sigma", ()),
    ("trainable_params.rank", lambda v: ib.trainable_params(SPEC, rank=v), "rank", ("none",)),
    ("mode_ratio.spec", lambda v: ib.mode_ratio(v, "b_only", "lora"), "spec", ()),
    ("mode_ratio.mode", lambda v: ib.mode_ratio(SPEC, v, "lora"), "mode", ("none",)),  # None: the spec's
    ("equivalent_rank.rank", lambda v: ib.equivalent_rank(SPEC, v), "rank", ("none",)),
    ("preset_spec.name", lambda v: ib.preset_spec(v), "preset", ()),
    ("preset_spec.rank", lambda v: ib.preset_spec("roberta-base", rank=v), "rank", ()),
    ("preset_spec.bits", lambda v: ib.preset_spec("roberta-base", bits=v), "bits", ()),
    ("preset_spec.num_classes", lambda v: ib.preset_spec("roberta-base", num_classes=v), "num_classes",
     ("none",)),
    ("preset_spec.targets", lambda v: ib.preset_spec("roberta-base", targets=v), "targets", ("none", "empty")),
    ("custom_spec.layers", lambda v: ib.custom_spec(v), "layer", ()),
    ("custom_spec.extra", lambda v: ib.custom_spec([("q", 4, 4)], rank=1, extra={"head": v}), "extra",
     ("zero",)),
    ("LayerSpec.d_in", lambda v: LayerSpec("q", v, 4), "d_in", ()),
    ("LayerSpec.d_out", lambda v: LayerSpec("q", 4, v), "d_out", ()),
    ("LayerSpec.rank", lambda v: LayerSpec("q", 4, 4, v), "rank", ("none",)),
    ("LayerSpec.name", lambda v: LayerSpec(v, 4, 4), "name", ("string",)),
    ("lambdify_bound.n", lambda v: symbolic.lambdify_bound("lora", SPEC)(n=v), "n must", ()),
    ("plot_bound_vs_rank.sigma", lambda v: plot_bound_vs_rank(SPEC, [1, 2], 100, sigma=v), "sigma", ()),
    ("plot_bound_vs_n.ns", lambda v: plot_bound_vs_n(SPEC, v), "ns", ()),
    ("SweepConfig.task", lambda v: _sweep(task=v), "task", ("string",)),
    ("SweepConfig.modes", lambda v: _sweep(modes=v), "mode", ()),
    ("SweepConfig.ranks", lambda v: _sweep(ranks=v), "ranks", ()),
    ("SweepConfig.ns", lambda v: _sweep(ns=v), "n", ()),
    ("SweepConfig.seeds", lambda v: _sweep(seeds=v), "seeds", ()),
    ("SweepConfig.bits", lambda v: _sweep(bits=v), "bits", ("none",)),
    ("SweepConfig.steps", lambda v: _sweep(steps=v), "steps", ()),
    ("SweepConfig.lr", lambda v: _sweep(lr=v), "lr", ()),
    ("SweepConfig.clip", lambda v: _sweep(clip=v), "clip", ()),
    ("SweepConfig.alpha", lambda v: _sweep(alpha=v), "alpha", ("none",)),
    ("SweepConfig.init", lambda v: _sweep(init=v), "init", ()),
    ("SweepConfig.targets", lambda v: _sweep(targets=v), "targets", ("none", "string")),
    ("mean_ci.values", lambda v: mean_ci(v), "values", ()),
    ("summarize.records", lambda v: summarize(v), "records", ()),
]
API_CASES = [(cid, call, word, value_id) for cid, call, word, valid in API
             for value_id in GENERIC if value_id not in valid]


@pytest.mark.parametrize("call, word, value_id", [c[1:] for c in API_CASES],
                         ids=[f"{c[0]}={c[3]}" for c in API_CASES])
def test_api_refuses_with_the_parameter_named(call, word, value_id):
    with pytest.raises(ValueError) as err:
        call(GENERIC[value_id])
    assert word in str(err.value), str(err.value)
    assert type(err.value) is not ValueError or "got" in str(err.value)


def test_strings_and_scalars_are_lists_not_characters():
    config = SweepConfig(targets="fc1", modes="lora,b_only", ranks=4, ns="100,200", bits="8,none")
    assert config.targets == ("fc1",)
    assert config.modes == (Mode.LORA, Mode.B_ONLY)
    assert config.ranks == (4,) and config.ns == (100, 200) and config.bits == (8, None)


def test_a_layer_dict_with_a_misspelt_key_names_it():
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['d_inn'\]"):
        ib.custom_spec([{"name": "q", "d_inn": 4, "d_out": 4}])


@pytest.mark.parametrize("value_id", ["zero", "negative", "nan", "none", "string", "bool", "huge"])
def test_validate_refuses_bad_workers_and_out_before_anything_is_written(tmp_path, value_id):
    value = GENERIC[value_id]
    with pytest.raises(ValueError, match="workers"):
        validate(SweepConfig(seeds=1, ranks=(1,), ns=(30,), steps=1), tmp_path / "w", workers=value)
    if value_id != "string":
        with pytest.raises(ValueError, match="out"):
            validate(SweepConfig(seeds=1, ranks=(1,), ns=(30,), steps=1), value)
        with pytest.raises(ValueError, match="DIR"):
            write_report(value)
    assert list(tmp_path.iterdir()) == []


def test_validate_refuses_an_executor_without_map(tmp_path):
    with pytest.raises(ValueError, match="executor"):
        validate(SweepConfig(seeds=1, ranks=(1,), ns=(30,), steps=1), tmp_path / "e", executor=object())
    assert not (tmp_path / "e").exists()


BAD_TEXT = {"zero": "0", "negative": "-1", "nan": "nan", "inf": "inf", "-inf": "-inf", "huge": HUGE_TEXT,
            "string": "ten", "fraction": "2.5", "empty": ""}
CLI = [  # (subcommand and fixed arguments, option, bad texts that are valid here)
    (["bound"], "--n", ()), (["bound"], "--sigma", ("fraction",)), (["bound"], "--rank", ()),
    (["bound"], "--bits", ()), (["bound", "--preset", "roberta-base"], "--num-classes", ()),
    (["bound"], "--gap", ()),
    (["bound"], "--mode", ()), (["bound"], "--preset", ()), (["bound"], "--layers", ()),
    (["bound"], "--targets", ("empty",)),
    (["plot"], "--ranks", ()), (["plot", "--vs", "n"], "--ns", ()), (["plot", "--vs", "bits"], "--bits-range", ()),
    (["plot"], "--out", ()), (["symbolic"], "--mode", ()), (["presets"], "", ()),
    (["validate"], "--seeds", ()), (["validate"], "--steps", ()), (["validate"], "--lr", ("fraction",)),
    (["validate"], "--clip", ("fraction",)), (["validate"], "--alpha", ("fraction",)),
    (["validate"], "--workers", ()),
    (["validate"], "--ranks", ()), (["validate"], "--n", ()), (["validate"], "--bits", ()),
    (["validate"], "--modes", ()), (["validate"], "--task", ()), (["validate"], "--init", ()),
    (["validate"], "--targets", ("empty",)), (["report"], "", ()),
]
CLI_CASES = [(head, option, text_id) for head, option, valid in CLI for text_id in BAD_TEXT
             if text_id not in valid]


@pytest.mark.parametrize("head, option, text_id", CLI_CASES,
                         ids=[f"{h[0]} {o or 'NAME'}={t}" for h, o, t in CLI_CASES])
def test_cli_refuses_with_one_line_naming_the_option(tmp_path, head, option, text_id):
    text = BAD_TEXT[text_id]
    if head == ["report"]:
        text = str(tmp_path / text)  # a folder that is not a validate folder
    argv = [*head, *([option] if option else []), text]
    if head[0] == "validate":
        argv += ["--out", str(tmp_path / "out"), "--no-progress"]
    line = one_error_line(*run_cli(argv))
    name = option or {"presets": "preset", "report": "DIR"}[head[0]]
    stem = name.lstrip("-").replace("-", "_")
    positional_as_option = not option and text.startswith("-")  # argparse: "unrecognized arguments"
    assert name in line or stem in line or stem.rstrip("s") in line or positional_as_option, line
    assert not (tmp_path / "out").exists()  # refused before the output folder was made


# ---------------------------------------------------------------------------------- 3. preset heads
# Heads written out from the transformers classes (modeling_roberta / modeling_bart / modeling_llama /
# modeling_vit): every nn.Linear's weight and bias.
HEADS = {
    "roberta-base": lambda c: (768 * 768 + 768) + (768 * c + c),  # dense + out_proj, both with bias
    "roberta-large": lambda c: (1024 * 1024 + 1024) + (1024 * c + c),
    "bart-large": lambda c: (1024 * 1024 + 1024) + (1024 * c + c),  # BartClassificationHead
    "llama-2-7b": lambda c: 4096 * c,  # score = nn.Linear(hidden, num_labels, bias=False)
    "llama-2-13b": lambda c: 5120 * c,
    "llama-2-70b": lambda c: 8192 * c,
    "vit-base-patch16-224": lambda c: 768 * c + c,  # classifier = nn.Linear(hidden, num_labels)
    "vit-large-patch16-224": lambda c: 1024 * c + c,
}


@pytest.mark.parametrize("name", sorted(HEADS))
@pytest.mark.parametrize("classes", [1, 2, 101])
def test_preset_heads_count_every_trained_parameter(name, classes):
    targets = "query,value" if name.startswith("vit") else None
    spec = ib.preset_spec(name, targets, rank=4, num_classes=classes, mode="b_only")
    assert spec.extra["classifier"] == HEADS[name](classes)
    assert ib.get_preset(name).head  # the head assumed is said in words
    assert spec.trainable_params == 4 * sum(l.d_out for l in spec.layers) + HEADS[name](classes)


def test_bart_head_adds_its_dense_layer_to_the_bound():
    with_head = ib.preset_spec("bart-large", rank=8, num_classes=2, mode="b_only")
    assert with_head.extra["classifier"] - (1024 * 2 + 2) == 1_049_600  # the dense layer 1024 -> 1024


# ------------------------------------------------------------------------------- 6. inert options
INERT = [
    (["plot", "--vs", "n", "--ranks", "1:4"], ["--ranks", "--vs rank"]),
    (["plot", "--vs", "rank", "--ns", "100:1000"], ["--ns", "--vs n"]),
    (["plot", "--vs", "rank", "--rank", "4"], ["--rank", "swept"]),
    (["plot", "--vs", "n", "--n", "100"], ["--n", "swept"]),
    (["plot", "--vs", "bits", "--bits", "8"], ["--bits", "swept"]),
    (["plot", "--vs", "n", "--bits-range", "1:8"], ["--bits-range", "--vs bits"]),
    (["symbolic", "--facts", "--latex"], ["--latex", "--facts"]),
    (["symbolic", "--facts", "--mode", "b_only"], ["--mode", "--facts"]),
    (["symbolic", "--facts", "--preset", "roberta-base"], ["--preset", "--facts"]),
]


@pytest.mark.parametrize("argv, words", INERT, ids=[" ".join(a) for a, _ in INERT])
def test_options_that_would_do_nothing_are_refused(argv, words, tmp_path):
    line = one_error_line(*run_cli([*argv, *(["--out", str(tmp_path / "p.png")] if argv[0] == "plot" else [])]))
    for word in words:
        assert word in line, (word, line)
    assert not (tmp_path / "p.png").exists()


# ----------------------------------------------------------------------------- 7. rates, honestly
def _rate_records(slope: float, ns, seeds=8, noise=0.002):
    rng = np.random.default_rng(1)
    out = []
    for n in ns:
        for s in range(seeds):
            gap = 0.05 * (n / ns[0]) ** slope + noise * rng.standard_normal()
            out.append({"task": "t", "mode": "b_only", "rank": 1, "n": n, "seed": s, "bits": 8,
                        "train_error": 0.1, "test_error": 0.1 + gap, "gap": gap, "bound": 0.5,
                        "bound_applicable": True, "loss_kind": "zero_one"})
    return out


def test_two_points_are_unclear_whatever_the_interval():
    rates = summarize(_rate_records(-0.5, (100, 400)), n_boot=200).rates
    (row,) = [r for r in rates if r.against == "n"]
    assert row.slope.points == 2 and row.agrees == "unclear"


def test_a_growing_gap_never_agrees_with_a_decaying_theory():
    rates = summarize(_rate_records(+1.02, (100, 200, 400)), n_boot=500).rates
    (row,) = [r for r in rates if r.against == "n"]
    assert row.slope.slope == pytest.approx(1.02, abs=0.1)
    assert row.agrees == "no"


def test_a_clean_minus_half_agrees_and_the_table_states_the_points(tmp_path):
    from infobound.harness.report import write_markdown

    summary = summarize(_rate_records(-0.5, (100, 200, 400, 800)), n_boot=500)
    (row,) = [r for r in summary.rates if r.against == "n"]
    assert row.slope.points == 4 and row.agrees == "yes"
    text = write_markdown(summary, tmp_path / "s.md").read_text()
    assert "| points |" in text.replace(" points ", " points ").replace("|points|", "| points |")


# ------------------------------------------------------------------------- 8. the import structure
def _module_imports(path: Path) -> list[tuple[str, list[str]]]:
    """(imported module, imported names) of the module-level imports of ``path``, resolved."""
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    package = parts if path.name == "__init__.py" else parts[:-1]
    out = []
    for node in ast.parse(path.read_text()).body:  # module level only: lazy imports inside functions are fine
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + (node.module.split(".") if node.module else []))
            if module.startswith("infobound"):
                out.append((module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.startswith("infobound")]
    return out


def _name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in PACKAGE.rglob("*.py")}


def test_no_module_imports_another_modules_private_names():
    offences = []
    for name, path in MODULES.items():
        for module, names in _module_imports(path):
            for imported in names:
                target = f"{module}.{imported}"
                private = imported.startswith("_") and not imported.startswith("__")
                if private and target not in MODULES and module != name:
                    offences.append(f"{name}: from {module} import {imported}")
    assert offences == []


def test_no_import_circles_among_module_level_imports():
    graph = {}
    for name, path in MODULES.items():
        edges = set()
        for module, names in _module_imports(path):
            for imported in names or [None]:
                sub = f"{module}.{imported}" if imported else None
                edges.add(sub if sub in MODULES else module)
        graph[name] = {e for e in edges if e in MODULES and e != name}
    state: dict[str, int] = {}
    cycles = []

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1 and not name_is_package_of(nxt, node):
                cycles.append(stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    def name_is_package_of(pkg, mod):  # a module importing its own package's __init__ is not a circle
        return mod.startswith(pkg + ".")

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_bounds_and_certificates_import_no_torch():
    for name in ("infobound.bounds", "infobound.validation", "infobound.certificates", "infobound.cmi",
                 "infobound.codelength", "infobound.cliargs", "infobound.harness.rows"):
        for module, _ in _module_imports(MODULES[name]):
            assert module not in ("infobound.lora", "infobound.quantize"), (name, module)
        assert "import torch" not in MODULES[name].read_text(), name


def test_snapshot_helper_sees_every_file(tmp_path):  # the helper the folder checks rely on
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "b.txt").write_bytes(b"x")
    assert snapshot(tmp_path) == {"a/b.txt": b"x"}
