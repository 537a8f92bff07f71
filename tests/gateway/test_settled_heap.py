"""The serving commands' heap, once the app is built (gateway/cli/serving.py)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from gateway.cli.serving import GC_YOUNG_THRESHOLD, _settle_heap


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_gc")
def test_what_exists_once_the_app_is_built_is_frozen_and_young_objects_wait_longer() -> None:
    app_object = {"a table": ["columns"]}
    _settle_heap()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD
    # What existed is out of the collector's generations: a full collection no longer walks it.
    assert not any(o is app_object for o in gc.get_objects())
