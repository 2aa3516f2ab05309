"""The pure core never reads the wall clock: every test here runs with it frozen at a
date unrelated to the scenarios, so a stray `datetime.now()` would show."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from freezegun import freeze_time


@pytest.fixture(autouse=True)
def frozen_wall_clock() -> Iterator[None]:
    with freeze_time("2033-03-03 03:03:03"):
        yield
