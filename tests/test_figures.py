"""Figures: error bars against scipy's t-intervals; the module imports on its own and via ``report``.

The plotted means and files are also checked in test_report.py, through ``report``'s names.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from infobound.errors import InputError
from infobound.harness import figures

ROOT = Path(__file__).resolve().parents[1]
TEST_ERRORS = {  # (mode, rank) -> test error per seed, chosen by hand
    ("lora", 2): [0.20, 0.25, 0.22, 0.27],
    ("lora", 4): [0.18, 0.21, 0.19, 0.30],
    ("b_only", 2): [0.31, 0.29, 0.35, 0.30],
    ("b_only", 4): [0.26, 0.24, 0.28, 0.21],
}


def records():
    return [dict(task="hand", mode=mode, rank=rank, n=50, seed=s, bits=8, test_error=e,
                 train_error=e - 0.1, bound=0.5)
            for (mode, rank), errors in TEST_ERRORS.items() for s, e in enumerate(errors)]


def test_error_bars_are_scipy_t_intervals():
    ax = figures.plot_test_error(records(), confidence=0.9).axes[0]
    for mode in ("lora", "b_only"):
        bars = next(c for c in ax.containers if c.get_label() == mode)
        values = [TEST_ERRORS[mode, r] for r in (2, 4)]
        assert np.allclose(bars.lines[0].get_xdata(), [2, 4])
        assert np.allclose(bars.lines[0].get_ydata(), [np.mean(v) for v in values])
        segments = bars.lines[2][0].get_segments()  # one vertical segment per rank: (low, high)
        assert len(segments) == 2
        for seg, v in zip(segments, values):
            low, high = sps.t.interval(0.9, len(v) - 1, loc=np.mean(v), scale=sps.sem(v))
            assert (seg[0][1], seg[1][1]) == (pytest.approx(low), pytest.approx(high))


def test_gap_vs_rank_needs_one_n():
    mixed = records() + [dict(r, n=80) for r in records()]
    with pytest.raises(InputError, match="must share one n"):
        figures.plot_gap_vs_rank(mixed)


def test_either_module_imports_first_in_a_fresh_process():
    """Data flows one way (records -> rows -> report, figures): neither imports the other."""
    code = ("import sys\n"
            "import infobound.harness.report as r\n"
            "assert 'matplotlib' not in sys.modules, 'summarising alone imports matplotlib'\n"
            "assert 'infobound.harness.figures' not in sys.modules\n"
            "import infobound.harness.figures as f\n"
            "assert f.ConfigRow is r.ConfigRow\n")
    other = ("import sys\nfrom infobound.harness.figures import write_plots\n"
             "assert 'infobound.harness.report' not in sys.modules\n")
    for source in (code, other):
        done = subprocess.run([sys.executable, "-c", source], cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


def test_plot_names_of_tasks_with_a_model_and_a_shift_are_plain_file_names(tmp_path):
    from infobound.files import safe_name

    assert safe_name("mnist/vit:permute") == "mnist-vit_permute"
    assert safe_name("digits") == "digits" and safe_name("a b/c") == "a_b-c"
    named = [dict(r, task="mnist/vit:permute") for r in records()]
    files = figures.write_plots(named, tmp_path)
    assert files and all(Path(f).parent == tmp_path for f in files)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(Path(f).name for f in files)
    assert all(Path(f).name.startswith(("test_error_mnist-vit_permute", "gap_vs_rank_mnist-vit_permute"))
               for f in files)
