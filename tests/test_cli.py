"""The command line: numbers against hand calculations, and one-line errors for every bad input."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys

import pytest

from infobound.cli import COMMANDS, main

LN2 = math.log(2.0)
WIDTH = 100


def hand_bound(d_train: int, n: int, sigma: float = 0.5, bits: int = 16) -> float:
    """sqrt(2 σ² ln2 · bits · d_train / n), written out here, independently of infobound.bounds."""
    return math.sqrt(2.0 * sigma**2 * LN2 * bits * d_train / n)


def run_json(capsys, *argv) -> list[dict]:
    assert main(["bound", *argv, "--json"]) == 0
    out = capsys.readouterr().out
    return [json.loads(line) for line in out.splitlines()]


def run_error(capsys, argv) -> str:
    """Run argv; check exit 2, nothing on stdout, one stderr line; return the message."""
    status = main(argv)
    captured = capsys.readouterr()
    assert status == 2, captured
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("infobound: error: ")
    assert "Traceback" not in captured.err and captured.out == ""
    return lines[0]


# ------------------------------------------------------------------------------- bound numbers
def test_llama_b_only_json_matches_hand_calculation(capsys):
    (record,) = run_json(capsys, "--preset", "llama-2-7b", "--targets", "q_proj,v_proj", "--rank", "8",
                         "--bits", "16", "--n", "52002", "--sigma", "0.5", "--mode", "b_only")
    d_train = 32 * 2 * 8 * 4096  # 32 blocks × (q_proj, v_proj) × B: (4096, 8)
    assert d_train == 2_097_152
    assert record["mode"] == "b_only" and record["trainable_params"] == d_train
    assert record["info_bits"] == 16 * d_train
    assert record["info_nats"] == pytest.approx(16 * d_train * LN2, rel=1e-12)
    assert record["bound"] == pytest.approx(math.sqrt(2 * 0.25 * LN2 * 16 * d_train / 52002), rel=1e-12)
    assert record["vacuous"] is True  # about 14.9 >= 2σ = 1
    assert record["factors"] == {"A": 0, "B": d_train, "W": 0, "extra": 0}
    assert (record["rank"], record["bits"], record["n"], record["sigma"]) == (8, 16, 52002, 0.5)
    assert "expectation" in record["kind"]


def test_mode_all_gives_four_records_with_hand_counts(capsys):
    records = run_json(capsys, "--preset", "llama-2-7b", "--targets", "q_proj,v_proj", "--n", "52002",
                       "--mode", "all")
    by_mode = {r["mode"]: r for r in records}
    assert len(records) == 4 and set(by_mode) == {"lora", "b_only", "a_only", "full"}
    expected = {
        "lora": 64 * 8 * (4096 + 4096),
        "b_only": 64 * 8 * 4096,
        "a_only": 64 * 8 * 4096,
        "full": 64 * 4096 * 4096,
    }
    assert expected["lora"] == 4_194_304
    for mode, d_train in expected.items():
        assert by_mode[mode]["trainable_params"] == d_train
        assert by_mode[mode]["bound"] == pytest.approx(hand_bound(d_train, 52002), rel=1e-12)
    assert by_mode["lora"]["factors"] == {"A": 2_097_152, "B": 2_097_152, "W": 0, "extra": 0}
    assert by_mode["full"]["factors"]["W"] == 64 * 4096**2


def test_mode_comma_list_keeps_order(capsys):
    records = run_json(capsys, "--mode", "full,lora")
    assert [r["mode"] for r in records] == ["full", "lora"]


def test_defaults_are_roberta_large_query_value(capsys):
    records = run_json(capsys)
    by_mode = {r["mode"]: r for r in records}
    assert len(records) == 4
    lora = 24 * 2 * 8 * (1024 + 1024)  # 24 blocks × (query, value), rank 8
    assert by_mode["lora"]["trainable_params"] == lora
    assert by_mode["lora"]["bound"] == pytest.approx(hand_bound(lora, 10000, 0.5, 16), rel=1e-12)
    assert (by_mode["lora"]["n"], by_mode["lora"]["sigma"], by_mode["lora"]["bits"]) == (10000, 0.5, 16)


def test_custom_layers_by_hand(capsys):
    records = run_json(capsys, "--layers", "q:4096:4096,v:4096:1024", "--rank", "8", "--n", "1000",
                       "--sigma", "1", "--bits", "8")
    by_mode = {r["mode"]: r for r in records}
    expected = {
        "lora": 8 * (4096 + 4096) + 8 * (4096 + 1024),
        "b_only": 8 * 4096 + 8 * 1024,
        "a_only": 8 * 4096 + 8 * 4096,
        "full": 4096 * 4096 + 4096 * 1024,
    }
    for mode, d_train in expected.items():
        assert by_mode[mode]["trainable_params"] == d_train
        assert by_mode[mode]["bound"] == pytest.approx(hand_bound(d_train, 1000, 1.0, 8), rel=1e-12)


def test_custom_layers_with_own_rank_and_targets(capsys):
    (rec,) = run_json(capsys, "--layers", "q:64:32:4,v:64:64", "--rank", "8", "--mode", "lora")
    assert rec["trainable_params"] == 4 * (64 + 32) + 8 * (64 + 64)
    (rec,) = run_json(capsys, "--layers", "q:64:32:4,v:64:64", "--targets", "v", "--mode", "b_only")
    assert rec["trainable_params"] == 8 * 64


def test_num_classes_and_extra_count_in_every_mode(capsys):
    records = run_json(capsys, "--preset", "llama-2-7b", "--num-classes", "2", "--extra", "bias=100,norm=7")
    head = 4096 * 2  # LlamaForSequenceClassification's score: Linear(4096, 2) without bias
    by_mode = {r["mode"]: r for r in records}
    assert by_mode["b_only"]["trainable_params"] == 64 * 8 * 4096 + head + 107
    assert by_mode["full"]["trainable_params"] == 64 * 4096**2 + head + 107
    assert by_mode["lora"]["factors"]["extra"] == head + 107
    # RoBERTa's classification head: dense (1024 -> 1024) and out_proj (1024 -> 2), with biases
    (rec,) = run_json(capsys, "--num-classes", "2", "--mode", "a_only")
    assert rec["trainable_params"] == 48 * 8 * 1024 + (1024 * 1024 + 1024 + 1024 * 2 + 2)


def test_gap_gives_sample_size(capsys):
    (rec,) = run_json(capsys, "--preset", "llama-2-7b", "--mode", "b_only", "--gap", "0.05")
    d_train = 64 * 8 * 4096
    n_needed = 2 * 0.25 * LN2 * 16 * d_train / 0.05**2
    assert rec["gap"] == 0.05
    assert abs(rec["n_needed"] - n_needed) <= 1.0
    assert hand_bound(d_train, rec["n_needed"]) <= 0.05 < hand_bound(d_train, rec["n_needed"] - 2)


def test_table_text(capsys):
    assert main(["bound", "--preset", "llama-2-7b", "--targets", "q_proj,v_proj", "--n", "52002",
                 "--gap", "0.05"]) == 0
    out = capsys.readouterr().out
    assert "expectation bound" in out and "not a certificate" in out
    assert "16 bits" in out and "sub-Gaussian" in out
    assert "2,097,152" in out and "4,194,304" in out and "n for gap 0.05" in out
    row = next(line for line in out.splitlines() if line.startswith("b_only"))
    assert f"{hand_bound(2_097_152, 52002):.4g}" in row and row.split()[-2] == "yes"
    assert max(len(line) for line in out.splitlines()) <= WIDTH


def test_wide_table_stays_within_100_columns(capsys):
    assert main(["bound", "--preset", "llama-2-70b", "--targets", "all-linear", "--n", "1000000",
                 "--gap", "0.0001", "--num-classes", "1000"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= WIDTH


# ------------------------------------------------------------------------------------ bad input
BAD_INPUT = [
    (["bound", "--rank", "0"], ["rank"]),
    (["bound", "--preset", "llama-2-70b", "--rank", "2000"], ["rank", "v_proj", "1024"]),
    (["bound", "--bits", "0"], ["bits", "64"]),
    (["bound", "--bits", "65"], ["bits", "64"]),
    (["bound", "--bits", "2.5"], ["--bits", "integer"]),
    (["bound", "--n", "0"], ["--n", ">= 1"]),
    (["bound", "--sigma", "0"], ["sigma", "> 0"]),
    (["bound", "--sigma", "-1"], ["sigma", "> 0"]),
    (["bound", "--n", "nan"], ["--n", "integer", "nan"]),
    (["bound", "--sigma", "inf"], ["--sigma", "finite"]),
    (["bound", "--n", "ten"], ["--n", "integer"]),
    (["bound", "--gap", "0"], ["gap", "> 0"]),
    (["bound", "--preset", "gpt-9"], ["preset", "roberta-large", "llama-2-7b"]),
    (["bound", "--mode", "c_only"], ["--mode", "b_only", "all"]),
    (["bound", "--targets", "q_proj"], ["targets", "available modules", "query"]),
    (["bound", "--layers", "q:4096"], ["--layers", "NAME:D_IN:D_OUT"]),
    (["bound", "--layers", "q:4096:x"], ["--layers", "NAME:D_IN:D_OUT"]),
    (["bound", "--layers", ":4:4"], ["--layers", "NAME:D_IN:D_OUT"]),
    (["bound", "--layers", "q:0:4"], ["--layers", "d_in"]),
    (["bound", "--layers", "q:4:4:1:1"], ["--layers", "NAME:D_IN:D_OUT"]),
    (["bound", "--layers", "q:4:4,"], ["--layers", "NAME:D_IN:D_OUT"]),
    (["bound", "--layers", "q:4:4,q:8:8"], ["--layers", "unique"]),
    (["bound", "--layers", "q:4:4:9"], ["--layers", "rank", "[1, 4]"]),
    (["bound", "--layers", "q:4:4,v:4:2"], ["rank", "'v'"]),  # default rank 8 > min(4, 2)
    (["bound", "--layers", "q:4:4", "--num-classes", "2"], ["--num-classes", "--preset"]),
    (["bound", "--preset", "roberta-base", "--layers", "q:4:4"], ["--layers", "--preset"]),
    (["bound", "--extra", "head"], ["--extra", "NAME=COUNT"]),
    (["bound", "--extra", "head=-3"], ["--extra", "NAME=COUNT"]),
    (["bound", "--frobnicate"], ["--frobnicate"]),
    (["bound", "--rank"], ["--rank", "expected one argument"]),
    (["bound", "--preset", "vit-base-patch16-224"], ["targets", "available modules"]),
    ([], ["command", "bound", "plot"]),
    (["bogus"], ["bogus", "bound", "plot"]),
    (["presets", "gpt-9"], ["preset", "roberta-large"]),
    (["plot", "--vs", "depth"], ["--vs", "rank", "bits"]),
    (["plot", "--ranks", "1:"], ["--ranks", "LO:HI"]),
    (["plot", "--ranks", "8:2"], ["--ranks", "LO:HI"]),
    (["plot", "--ranks", "0,1"], ["--ranks", ">= 1"]),
    (["plot", "--ranks", "1:2000"], ["--ranks", "2000", "query"]),
    (["plot", "--vs", "n", "--ns", "100:nan"], ["--ns", "LO:HI"]),
    (["symbolic", "--targets", "q_proj"], ["--targets", "--preset"]),
]


@pytest.mark.parametrize("argv, words", BAD_INPUT, ids=[" ".join(a) or "<none>" for a, _ in BAD_INPUT])
def test_bad_input_exits_2_with_one_line(capsys, argv, words):
    message = run_error(capsys, argv)
    for word in words:
        assert word in message, (word, message)


def test_plot_bad_suffix_and_missing_folder(capsys, tmp_path):
    message = run_error(capsys, ["plot", "--out", str(tmp_path / "figure.jpg")])
    assert "--out" in message and ".png" in message and ".pdf" in message
    message = run_error(capsys, ["plot", "--out", str(tmp_path / "missing" / "figure.png")])
    assert "--out" in message and "does not exist" in message
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------------- plot
def test_plot_writes_png_and_replaces_old_file(capsys, tmp_path):
    out = tmp_path / "bound.png"
    out.write_bytes(b"old contents")
    assert main(["plot", "--targets", "query,value", "--ranks", "1:8", "--out", str(out)]) == 0
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and str(out) in line
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["bound.png"]  # no temporary file left


@pytest.mark.parametrize("argv", [["--vs", "n", "--ns", "100:1e6", "--mode", "lora,b_only"],
                                  ["--vs", "bits", "--bits-range", "1:8"]])
def test_plot_vs_n_and_bits(capsys, tmp_path, argv):
    out = tmp_path / "figure.svg"
    assert main(["plot", "--layers", "q:64:64,v:64:16", *argv, "--out", str(out)]) == 0
    assert out.read_text().lstrip().startswith("<?xml")


# ------------------------------------------------------------------------------------- presets
def test_presets_list(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in ("roberta-base", "roberta-large", "bart-large", "llama-2-7b", "llama-2-70b"):
        assert name in out
    assert "none: --targets required" in out and "q_proj,v_proj" in out
    assert "224 adaptable linear layers" in out  # LLaMA-2-7B: 32 blocks × 7 linear layers
    assert max(len(line) for line in out.splitlines()) <= WIDTH


def test_preset_detail_table_and_head_formula(capsys):
    assert main(["presets", "llama-2-70b"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.startswith(("k_proj", "q_proj", "down_proj"))]
    dims = {r[0]: (r[2], r[4], r[5]) for r in rows}  # module, path, d_in, →, d_out, count
    assert dims["q_proj"] == ("8192", "8192", "80")
    assert dims["k_proj"] == ("8192", str(8192 // 64 * 8), "80")  # grouped-query attention
    assert dims["down_proj"] == ("28672", "8192", "80")
    assert "8,192·C" in out  # LlamaForSequenceClassification's score: Linear(8192, C) without bias
    assert max(len(line) for line in out.splitlines()) <= WIDTH


# ---------------------------------------------------------------------------------------- misc
def test_version_and_help(capsys):
    assert main(["--version"]) == 0
    assert re.fullmatch(r"infobound \d+\.\d+\.\d+\S*", capsys.readouterr().out.strip())
    assert main(["bound", "--help"]) == 0
    assert "--layers" in capsys.readouterr().out


def test_registry_drives_the_parser(capsys):
    assert set(COMMANDS) >= {"bound", "plot", "symbolic", "presets"}
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


def _console(*args, use_script: bool):
    if use_script:
        exe = shutil.which("infobound")
        if exe is None:
            pytest.skip("the infobound console script is not installed")
        cmd = [exe, *args]
    else:
        cmd = [sys.executable, "-m", "infobound.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def test_console_script_errors_without_traceback():
    result = _console("bound", "--sigma", "inf", use_script=True)
    assert result.returncode == 2 and result.stdout == ""
    expected = "infobound: error: argument --sigma: must be a finite number > 0, got 'inf'"
    assert result.stderr.splitlines() == [expected]
    result = _console("--version", use_script=True)
    assert result.returncode == 0 and result.stdout.startswith("infobound ")


def test_module_entry_point_and_lazy_imports():
    result = _console("bound", "--rank", "0", use_script=False)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1 and "rank" in result.stderr
    code = ("import sys, infobound.cli; assert infobound.cli.main(['presets']) == 0; "
            "heavy = [m for m in ('sympy', 'matplotlib', 'torch') if m in sys.modules]; "
            "sys.stderr.write(repr(heavy))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr == "[]"


# ------------------------------------------------------------------------------------ symbolic
def test_symbolic_with_preset_matches_hand_bound(capsys):
    pytest.importorskip("infobound.symbolic")
    sympy = pytest.importorskip("sympy")
    assert main(["symbolic", "--mode", "b_only", "--preset", "llama-2-7b", "--targets", "q_proj,v_proj",
                 "--plain"]) == 0
    out = capsys.readouterr().out.splitlines()
    expr = sympy.sympify(out[out.index("b_only:") + 1])
    values = {"rank": 8, "bits": 16, "n": 52002, "sigma": 0.5}
    assert {s.name for s in expr.free_symbols} <= set(values)
    number = float(expr.subs({s: values[s.name] for s in expr.free_symbols}))
    assert number == pytest.approx(hand_bound(64 * 8 * 4096, 52002), rel=1e-12)


def test_symbolic_generic_latex_and_pretty(capsys):
    pytest.importorskip("infobound.symbolic")
    assert main(["symbolic", "--mode", "b_only", "--latex"]) == 0
    out = capsys.readouterr().out
    assert "\\sqrt" in out and "\\sigma" in out
    assert main(["symbolic", "--mode", "all"]) == 0
    out = capsys.readouterr().out
    assert all(f"{m}:" in out.splitlines() for m in ("lora", "b_only", "a_only", "full"))
    assert max(len(line) for line in out.splitlines()) <= WIDTH


def test_symbolic_generic_plain_is_the_formula(capsys):
    pytest.importorskip("infobound.symbolic")
    sympy = pytest.importorskip("sympy")
    assert main(["symbolic", "--mode", "lora", "--plain"]) == 0
    out = capsys.readouterr().out.splitlines()
    expr = sympy.sympify(out[out.index("lora:") + 1])
    values = {"rank": 4, "bits": 8, "n": 300, "sigma": 0.7, "sum_d_in": 96, "sum_d_out": 80, "extra": 5}
    number = float(expr.subs({s: values[s.name] for s in expr.free_symbols}))
    assert number == pytest.approx(hand_bound(4 * (96 + 80) + 5, 300, 0.7, 8), rel=1e-12)


def test_symbolic_facts(capsys):
    pytest.importorskip("infobound.symbolic")
    assert main(["symbolic", "--facts"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line[:1] in ("✓", "✗")]
    assert lines and all(line.startswith("✓") for line in lines)
