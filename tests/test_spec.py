"""AdapterSpec: parameter counts by hand, validation messages, immutability."""

import pytest

from infobound import AdapterSpec, InputError, LayerSpec, Mode


def small_spec(**kw):
    layers = [("q", 16, 8), ("v", 16, 4), ("o", 8, 16, 2)]
    return AdapterSpec(layers, **{"rank": 3, **kw})


def test_counts_by_hand_every_mode():
    # rank 3 on q (16->8) and v (16->4); o (8->16) has its own rank 2; extras 10
    hand = {
        Mode.LORA: 3 * (16 + 8) + 3 * (16 + 4) + 2 * (8 + 16) + 10,
        Mode.B_ONLY: 3 * 8 + 3 * 4 + 2 * 16 + 10,
        Mode.A_ONLY: 3 * 16 + 3 * 16 + 2 * 8 + 10,
        Mode.FULL: 16 * 8 + 16 * 4 + 8 * 16 + 10,
    }
    for mode, expected in hand.items():
        spec = small_spec(mode=mode, extra={"head": 10})
        assert spec.trainable_params == expected
        totals = spec.factor_totals()
        assert sum(totals.values()) == expected
        assert totals["extra"] == 10
        per_rank, constant = spec.rank_coefficients()
        assert per_rank * spec.rank + constant == expected


def test_breakdown_per_factor():
    spec = small_spec(mode="b_only")
    rows = {row.name: row for row in spec.breakdown()}
    assert (rows["q"].a, rows["q"].b, rows["q"].w) == (0, 24, 0)
    assert rows["o"].rank == 2 and rows["o"].b == 32
    lora = {row.name: row for row in spec.with_(mode="lora").breakdown()}
    assert (lora["v"].a, lora["v"].b) == (48, 12)


def test_mode_parsing_and_str():
    assert Mode.parse("B_ONLY") is Mode.B_ONLY
    assert str(Mode.A_ONLY) == "a_only"
    with pytest.raises(InputError, match="mode must be one of lora, b_only, a_only, full"):
        Mode.parse("c_only")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"rank": 0}, "rank must be an integer in"),
        ({"rank": 5}, "layer 'v' \\(16 -> 4\\) allows at most 4"),
        ({"rank": 2.5}, "rank must be an integer"),
        ({"bits": 0}, "bits must be an integer in \\[1, 64\\]"),
        ({"bits": 65}, "bits must be an integer in \\[1, 64\\]"),
        ({"bits": float("nan")}, "bits must be an integer"),
        ({"extra": {"head": -1}}, "extra\\['head'\\] must be an integer >= 0"),
        ({"mode": "half"}, "mode must be one of"),
    ],
)
def test_bad_input_names_parameter(kwargs, message):
    with pytest.raises(ValueError, match=message):
        small_spec(**kwargs)


def test_bad_layers():
    with pytest.raises(InputError, match="at least one"):
        AdapterSpec([])
    with pytest.raises(InputError, match="unique names"):
        AdapterSpec([("q", 4, 4), ("q", 4, 4)])
    with pytest.raises(InputError, match="d_in of layer 'q'"):
        AdapterSpec([("q", 0, 4)])
    with pytest.raises(InputError, match="rank of layer 'q'"):
        AdapterSpec([LayerSpec("q", 4, 4, rank=9)])
    with pytest.raises(InputError, match="each layer must be"):
        AdapterSpec([("q", 4)])


def test_frozen_and_hashable():
    spec = small_spec(extra={"head": 3})
    assert hash(spec) == hash(small_spec(extra={"head": 3}))
    assert spec == small_spec(extra={"head": 3})
    with pytest.raises(TypeError):
        spec.extra["head"] = 4
    with pytest.raises(AttributeError):
        spec.rank = 4  # type: ignore[misc]


def test_all_layers_with_own_rank_leave_adapter_rank_free():
    spec = AdapterSpec([LayerSpec("q", 4, 4, rank=2)], rank=100)
    assert spec.trainable_params == 2 * 8
