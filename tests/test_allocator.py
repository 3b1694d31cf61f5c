"""The allocator setting: applied once per process where glibc is, a no-op elsewhere."""

from __future__ import annotations

import platform
import sys

import pytest

from infobound.harness import allocator


def test_glibc_takes_the_settings_once(monkeypatch):
    if not (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"):
        pytest.skip("glibc only")
    monkeypatch.setattr(allocator, "_state", {})
    assert allocator.keep_freed_memory() is True
    calls = []
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda *a: calls.append(a))
    assert allocator.keep_freed_memory() is True and calls == []  # applied once per process


def test_elsewhere_it_does_nothing(monkeypatch):
    monkeypatch.setattr(allocator, "_state", {})
    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    assert allocator.keep_freed_memory() is False
    monkeypatch.setattr(allocator, "_state", {})
    monkeypatch.setattr(allocator.sys, "platform", "linux")

    def no_libc(*args):
        raise OSError("no libc")

    monkeypatch.setattr(allocator.ctypes, "CDLL", no_libc)
    assert allocator.keep_freed_memory() is False
