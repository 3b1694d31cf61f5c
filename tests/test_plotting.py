"""Figures: the plotted curves equal the seed bound written out by hand; files are valid and atomic."""

from __future__ import annotations

import math
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from infobound import InputError, custom_spec  # noqa: E402
from infobound.plotting import (  # noqa: E402
    check_output_path,
    plot_bound_vs_bits,
    plot_bound_vs_n,
    plot_bound_vs_rank,
    save_figure,
)

LN2 = math.log(2.0)
# Two layers: q (64 -> 64) and v (64 -> 16). d_train by hand, per mode, as a function of the rank.
SPEC = custom_spec([("q", 64, 64), ("v", 64, 16)], rank=4, bits=16)
D_TRAIN = {
    "lora": lambda r: r * ((64 + 64) + (64 + 16)),
    "b_only": lambda r: r * (64 + 16),
    "a_only": lambda r: r * (64 + 64),
    "full": lambda r: 0 * r + 64 * 64 + 64 * 16,
}


def hand_bound(d_train, n, bits, sigma):
    return np.sqrt(2.0 * sigma**2 * LN2 * bits * np.asarray(d_train, dtype=float) / n)


def mode_lines(fig) -> dict:
    (ax,) = fig.axes
    return {line.get_gid(): line for line in ax.get_lines() if line.get_gid() in D_TRAIN}


def test_bound_vs_rank_curves_equal_hand_formula():
    ranks = np.array([1, 2, 4, 8, 16])
    fig = plot_bound_vs_rank(SPEC, ranks, 1000, bits=16, sigma=0.5)
    lines = mode_lines(fig)
    assert set(lines) == set(D_TRAIN)
    for mode, line in lines.items():
        np.testing.assert_array_equal(line.get_xdata(), ranks)
        expected = hand_bound(D_TRAIN[mode](ranks), 1000, 16, 0.5)
        np.testing.assert_allclose(line.get_ydata(), expected, rtol=1e-12)
    full = lines["full"]
    assert np.ptp(full.get_ydata()) == 0 and "independent of rank" in full.get_label()


def test_bound_vs_n_curves_equal_hand_formula():
    ns = np.array([10, 100, 1000, 10**4, 10**5])
    fig = plot_bound_vs_n(SPEC, ns, rank=2, bits=8, sigma=1.0, modes=["b_only", "lora"])
    lines = mode_lines(fig)
    assert set(lines) == {"b_only", "lora"}
    for mode, line in lines.items():
        np.testing.assert_allclose(line.get_ydata(), hand_bound(D_TRAIN[mode](2), ns, 8, 1.0), rtol=1e-12)
    (ax,) = fig.axes
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"


def test_bound_vs_bits_curves_equal_hand_formula():
    bits = np.arange(1, 9)
    fig = plot_bound_vs_bits(SPEC, bits, 500, rank=3, sigma=0.25, modes="a_only")
    (line,) = mode_lines(fig).values()
    expected = hand_bound(D_TRAIN["a_only"](3), 500, bits, 0.25)
    np.testing.assert_allclose(line.get_ydata(), expected, rtol=1e-12)


def test_vacuous_region_axes_labels_and_title():
    fig = plot_bound_vs_rank(SPEC, [1, 2, 4], 1000, bits=16, sigma=0.5)
    (ax,) = fig.axes
    (band,) = [p for p in ax.patches if p.get_gid() == "vacuous"]
    fig.canvas.draw()
    (y_low, y_high) = ax.transData.inverted().transform(band.get_extents().get_points())[:, 1]
    assert y_low == pytest.approx(1.0, rel=1e-6)  # 2σ
    assert y_high >= ax.get_ylim()[1] * (1 - 1e-6)
    # the full-mode bound sqrt(0.5 · ln2 · 16 · 5120 / 1000) ≈ 5.3 lies in the band, b_only at r=1 below
    full = mode_lines(fig)["full"].get_ydata()
    assert full.min() > y_low > mode_lines(fig)["b_only"].get_ydata().min()
    assert any("vacuous" in text.get_text() for text in ax.get_legend().get_texts())
    assert "rank" in ax.get_xlabel() and "loss units" in ax.get_ylabel()
    assert "n = 1,000" in ax.get_title() and "16 bits" in ax.get_title() and "σ = 0.5" in ax.get_title()


def test_plot_rejects_bad_grids_and_ranks():
    with pytest.raises(InputError, match="rank"):
        plot_bound_vs_rank(SPEC, [1, 32], 1000)  # layer v (64 -> 16) allows at most 16
    with pytest.raises(InputError, match="ranks"):
        plot_bound_vs_rank(SPEC, [], 1000)
    with pytest.raises(InputError, match="ns"):
        plot_bound_vs_n(SPEC, [0, 10])
    with pytest.raises(InputError, match="mode"):
        plot_bound_vs_rank(SPEC, [1, 2], 1000, modes=["c_only"])


@pytest.fixture(scope="module")
def small_figure():
    return plot_bound_vs_n(SPEC, [10, 100, 1000], modes=["lora", "full"])


def test_png_file_is_valid(tmp_path, small_figure):
    path = save_figure(small_figure, tmp_path / "f.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_svg_file_parses_as_xml(tmp_path, small_figure):
    path = save_figure(small_figure, tmp_path / "f.svg")
    assert ET.parse(path).getroot().tag.endswith("svg")


def test_pdf_file_has_header(tmp_path, small_figure):
    path = save_figure(small_figure, tmp_path / "f.PDF")
    data = path.read_bytes()
    assert data.startswith(b"%PDF-") and b"%%EOF" in data[-64:]


def test_bad_suffix_and_missing_folder(tmp_path, small_figure):
    with pytest.raises(InputError, match=r"\.png, \.svg or \.pdf"):
        save_figure(small_figure, tmp_path / "f.jpg")
    with pytest.raises(InputError, match="does not exist"):
        save_figure(small_figure, tmp_path / "no" / "f.png")
    with pytest.raises(InputError, match="--out must end"):
        check_output_path(tmp_path / "f", name="--out")
    assert list(tmp_path.iterdir()) == []


def test_failed_save_leaves_old_file_and_no_temporary(tmp_path, small_figure, monkeypatch):
    path = tmp_path / "f.png"
    path.write_bytes(b"previous figure")

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(small_figure, "savefig", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        save_figure(small_figure, path)
    assert path.read_bytes() == b"previous figure"
    assert [p.name for p in tmp_path.iterdir()] == ["f.png"]


def test_plotting_never_imports_torch():
    code = "import sys, infobound.plotting; sys.stderr.write(str('torch' in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr == "False"
