"""``--device``: cpu by default and in the store keys of earlier versions; cuda where torch sees a GPU
(the GPU test skips cleanly without one); a clear error naming --device otherwise."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from cli_helpers import one_error_line, run_cli
from infobound.errors import InputError
from infobound.harness.store import config_key
from infobound.harness.sweep import SweepConfig, run_group

NO_GPU = not torch.cuda.is_available()
TINY = dict(modes=("b_only", "lora"), ranks=(2,), ns=(40,), seeds=2, steps=15)


def test_cpu_is_the_default_and_leaves_the_store_keys_as_they_were():
    config = SweepConfig(**TINY)
    assert config.device == "cpu" and SweepConfig(**TINY, device=" CPU ").device == "cpu"
    group = config.groups()[0]
    assert group.device == "cpu" and "device" not in group.run_config(0, 8)
    # the keys an earlier version (before --device) gave these runs, written down from it
    assert group.keys() == ["ed82025a8e5aab1f4107a256872aa8ccb823d0389cdc38ca8242174cb8d399e6",
                            "09477f36bf5840c030ab8f1ccc9c5850f407a6b7205ff729d4ecc060bcb20b4c"]
    cuda = dataclasses.replace(group, device="cuda")  # the group's own field, no GPU needed to key it
    assert cuda.run_config(0, 8)["device"] == "cuda" and config_key(cuda.run_config(0, 8)) != group.keys()[0]
    records = run_group(group)
    assert {r["device"] for r in records} == {"cpu"}


@pytest.mark.parametrize("bad", ["tpu", "cuda:x", "cpu:0", "", 3, None])
def test_an_unknown_device_is_refused_naming_the_option(bad):
    with pytest.raises(InputError, match=r"--device\) must be cpu or cuda"):
        SweepConfig(**TINY, device=bad)


@pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU: the refusal applies without one")
def test_cuda_without_a_gpu_is_a_clear_error_in_python_and_on_the_command_line(tmp_path):
    with pytest.raises(InputError, match=r"--device\) 'cuda' asks for a CUDA GPU, but torch sees none"):
        SweepConfig(**TINY, device="cuda")
    line = one_error_line(*run_cli(["validate", "--device", "cuda", "--out", str(tmp_path / "out"),
                                    "--no-progress"]))
    assert "--device" in line and "cuda" in line and "use --device cpu" in line
    assert not (tmp_path / "out").exists()  # refused before anything was written


@pytest.mark.skipif(NO_GPU, reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
def test_cuda_runs_the_same_stacked_training_up_to_float_rounding():
    cpu = SweepConfig(**TINY)
    gpu = dataclasses.replace(cpu, device="cuda")
    for g_cpu, g_gpu in zip(cpu.groups(), gpu.groups()):
        assert g_gpu.keys() != g_cpu.keys()  # other numbers (rounding): other keys
        on_cpu, on_gpu = run_group(g_cpu), run_group(g_gpu)
        assert {r["device"] for r in on_gpu} == {"cuda"}
        for a, b in zip(on_cpu, on_gpu):
            assert (a["seed"], a["bits"]) == (b["seed"], b["bits"])
            np.testing.assert_allclose(b["train_loss"], a["train_loss"], rtol=1e-3)
            np.testing.assert_allclose(b["trained_max_abs"], a["trained_max_abs"], rtol=1e-3)
            # a test example may flip only where rounding moves a logit across another: a few at most
            assert abs(a["test_error"] - b["test_error"]) * a["test_n"] <= 3
