"""Definitions are built with the cyclic garbage collector paused and frozen after
(:mod:`orchestrator.long_lived`): the collector must come back whatever happens, and what the
build threw away must still be freed."""

from __future__ import annotations

import gc
import weakref

import pytest

from orchestrator.long_lived import built_to_live


class _Node:
    """A plain object that can sit in a reference cycle and be watched with a weak reference."""

    def __init__(self) -> None:
        self.other: _Node | None = None


def _cycle() -> weakref.ref:
    """A two-object reference cycle nobody refers to (garbage only the collector frees)."""
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_the_collector_is_paused_in_the_block_and_back_after_it() -> None:
    assert gc.isenabled()
    with built_to_live():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_failing_build_leaves_the_collector_enabled_and_freezes_nothing() -> None:
    frozen = gc.get_freeze_count()
    with pytest.raises(ValueError, match="broken segment"), built_to_live():
        _Node()
        raise ValueError("broken segment")
    assert gc.isenabled()
    assert gc.get_freeze_count() == frozen


def test_a_disabled_collector_stays_disabled() -> None:
    gc.disable()
    try:
        with built_to_live():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_what_the_block_keeps_is_frozen_and_its_garbage_cycles_are_freed() -> None:
    kept: list[_Node] = []
    with built_to_live():
        kept.append(_Node())
        dropped = _cycle()
        assert dropped() is not None  # the collector is paused: the cycle is still there
    assert dropped() is None  # freed before the freeze, not frozen for the process's life
    # frozen: in the permanent generation, which the collector (and get_objects) skips
    assert not any(obj is kept[0] for obj in gc.get_objects())


def test_a_garbage_cycle_made_after_the_block_is_still_collected() -> None:
    with built_to_live():
        pass
    dropped = _cycle()
    gc.collect()
    assert dropped() is None
