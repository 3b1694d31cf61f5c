"""The paper's performance claims side by side across tasks and shifts: one row per (task, n, rank).

Each folder is one sweep (one task, e.g. ``mnist:mirror`` or ``mnist/vit:permute``). A row sets, for
one n, rank and bit width, the claims (i) B-only ≈ LoRA and (ii) A-only > B-only as test-error
differences with their intervals over seeds, beside the asymmetry the model itself predicts: the
fraction of LoRA's learned update that B-only (a random A) and A-only (a random B) capture,
averaged over the adapted layers (``harness.asymmetry``). Decisions are re-made with Holm across
every claim row of every folder together (one family, α/2 per side), so adding tasks cannot make a
claim look better. No torch unless a folder holds stored adapters for the asymmetry columns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..files import write_file
from .report import ClaimRow, summarize
from .stats import claim_decisions


@dataclass(frozen=True)
class CompareRow:
    """One (task, n, rank, bits): claims (i) and (ii) with intervals and Holm decisions across folders."""

    task: str
    side: str
    """Where the shift acts: "input" (what the layers read), "output" (what the network writes) or "—"."""
    n: int
    rank: int
    bits: int | None
    seeds: int
    b_minus_lora: float
    b_minus_lora_ci: tuple[float, float]
    b_equals_lora: str
    """Decision on claim (i), |B-only − LoRA| ≤ margin: yes / no / unclear (Holm across all rows)."""
    a_minus_b: float
    a_minus_b_ci: tuple[float, float]
    a_worse_than_b: str
    """Decision on claim (ii), A-only − B-only > 0."""
    lora_test: float
    b_only_test: float
    captured_b_only: float
    """Mean over adapted layers of the fraction of LoRA's update a random-A (B-only) adapter captures."""
    captured_a_only: float
    """The same for an A-only adapter (a random B, Lemma 4.2): below the B-only fraction predicts (ii)."""


def _side(task_name: str) -> str:
    try:
        from .tasks import get_task

        return get_task(task_name).shift_side or "—"
    except Exception:  # noqa: BLE001 - a task this version no longer knows: the table still shows it
        return "—"


def _asymmetry(folder: Path, records: list[dict]) -> dict[tuple, tuple[float, float]]:
    """(task, rank, n, bits) -> (mean B-only fraction, mean A-only fraction) over the adapted layers."""
    from ..extras import HARNESS, missing
    from .store import open_for_reading

    lora = [r["key"] for r in records if r.get("mode") == "lora" and r.get("code_length_bits") is not None]
    if not lora or missing(HARNESS):
        return {}
    from .asymmetry import asymmetry_rows
    from .tasks import get_task

    with open_for_reading(folder) as store:
        if not store.has_arrays:
            return {}
        arrays = store.arrays_many(lora)
    out: dict[tuple, list] = {}
    for row in asymmetry_rows(records, arrays, get_task(records[0]["task"])):
        out.setdefault((row.task, row.rank, row.n, row.bits), []).append((row.b_only, row.a_only))
    return {k: (sum(b for b, _ in v) / len(v), sum(b for _, b in v) / len(v)) for k, v in out.items()}


def comparison_rows(folders, *, margin: float | None = None, confidence: float = 0.95) -> list[CompareRow]:
    """The rows of every folder's seed sweep, decided with Holm across all of them together."""
    from .store import open_for_reading

    folders = [Path(f) for f in folders]
    if not folders:
        raise InputError("folders must name at least one sweep folder, got none")
    claims: list[tuple[ClaimRow, dict]] = []
    extra = {}
    for folder in folders:
        if not (folder / "records.sqlite").is_file():
            raise InputError(f"folder {str(folder)!r} holds no run store (records.sqlite); run infobound validate into it first")
        with open_for_reading(folder) as store:
            records = [r for r in store.records() if r.get("kind", "seeds") == "seeds"]
        if not records:
            continue
        summary = summarize(records, confidence=confidence, **({} if margin is None else {"margin": margin}))
        tests = {(c.task, c.n, c.rank, c.bits, c.mode): c.test.mean for c in summary.configs}
        asym = _asymmetry(folder, records)
        for c in summary.claims:
            if c.claim in ("i", "ii") and " vs " not in c.rank:
                claims.append((c, {"tests": tests, "asym": asym}))
        extra[folder] = summary
    if not claims:
        return []
    yes, no, decisions = claim_decisions([c.p_yes for c, _ in claims], [c.p_no for c, _ in claims], 1.0 - confidence)
    decided = {id(c): str(d) for (c, _), d in zip(claims, decisions)}
    cells: dict[tuple, dict] = {}
    for c, ctx in claims:
        cell = cells.setdefault((c.task, c.n, int(c.rank), c.bits), {"ctx": ctx})
        cell[c.claim] = c
    rows = []
    nan = math.nan
    for (task, n, rank, bits), cell in cells.items():
        i, ii, ctx = cell.get("i"), cell.get("ii"), cell["ctx"]
        b_only, a_only = ctx["asym"].get((task, rank, n, bits), (nan, nan))
        rows.append(CompareRow(
            task=task, side=_side(task), n=n, rank=rank, bits=bits,
            seeds=(i or ii).seeds,
            b_minus_lora=i.effect if i else nan, b_minus_lora_ci=(i.low, i.high) if i else (nan, nan),
            b_equals_lora=decided[id(i)] if i else "—",
            a_minus_b=ii.effect if ii else nan, a_minus_b_ci=(ii.low, ii.high) if ii else (nan, nan),
            a_worse_than_b=decided[id(ii)] if ii else "—",
            lora_test=ctx["tests"].get((task, n, rank, bits, "lora"), nan),
            b_only_test=ctx["tests"].get((task, n, rank, bits, "b_only"), nan),
            captured_b_only=b_only, captured_a_only=a_only,
        ))
    rows.sort(key=lambda r: (r.task, r.n, r.rank, -1 if r.bits is None else r.bits))
    return rows


def _num(value: float, signed: bool = False) -> str:
    if not math.isfinite(value):
        return "—"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def _ci(pair: tuple[float, float]) -> str:
    return "—" if not all(math.isfinite(v) for v in pair) else f"[{pair[0]:+.3f}, {pair[1]:+.3f}]"


HEADER = ["task", "side", "n", "rank", "bits", "seeds", "LoRA test", "B-only test", "B−LoRA [CI]", "(i) B≈LoRA",
          "A−B [CI]", "(ii) A>B", "captured: B-only", "captured: A-only"]


def _cells(r: CompareRow) -> list[str]:
    return [r.task, r.side, str(r.n), str(r.rank), "none" if r.bits is None else str(r.bits), str(r.seeds),
            _num(r.lora_test), _num(r.b_only_test), f"{_num(r.b_minus_lora, True)} {_ci(r.b_minus_lora_ci)}",
            r.b_equals_lora, f"{_num(r.a_minus_b, True)} {_ci(r.a_minus_b_ci)}", r.a_worse_than_b,
            _num(r.captured_b_only), _num(r.captured_a_only)]


LEGEND = ("Test errors are means over seeds; B−LoRA and A−B are seed-matched differences of test error "
          "with their 95% t-intervals over seeds (what they cover: see each folder's summary.md). (i) "
          "and (ii) are decided with Holm across every row of this table (α/2 per side): yes, no or "
          "unclear. captured: the fraction of LoRA's learned update ΔW (measured on the target inputs' "
          "second moment Σ) that a rank-r adapter with a random A (B-only, Lemma 4.1) or a random B "
          "(A-only, Lemma 4.2) captures in expectation, averaged over the adapted layers (THEORY §2); "
          "LoRA itself captures 1. A small B-only fraction predicts B-only falls behind LoRA; an A-only "
          "fraction below B-only's predicts claim (ii).")


def comparison_markdown(rows: list[CompareRow]) -> str:
    lines = ["# infobound: the paper's claims across tasks and shifts", "", LEGEND, ""]
    if not rows:
        return "\n".join(lines + ["No seed sweep with both B-only and LoRA runs at the same rank was found.", ""])
    lines.append("| " + " | ".join(HEADER) + " |")
    lines.append("|" + "---|" * len(HEADER))
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in _cells(r)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def format_comparison(rows: list[CompareRow]) -> str:
    """The comparison as a fixed-width terminal table."""
    if not rows:
        return "comparison: no seed sweep with both B-only and LoRA runs at the same rank"
    body = [HEADER] + [_cells(r) for r in rows]
    widths = [max(len(row[j]) for row in body) for j in range(len(HEADER))]
    text = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in body]
    return "\n".join(["claims across tasks (Holm across all rows; intervals over seeds):", *text])


def write_comparison(folders, path, **kwargs) -> tuple[Path, list[CompareRow]]:
    """``comparison_rows(folders)`` written to ``path`` as Markdown (atomically)."""
    rows = comparison_rows(folders, **kwargs)
    return write_file(path, comparison_markdown(rows)), rows
