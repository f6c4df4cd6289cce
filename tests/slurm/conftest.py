"""What the Slurm tests share: a real single-node cluster per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import slurm


@pytest.fixture(scope="module")
def cluster() -> Iterator[slurm.Cluster]:
    if (why := slurm.available()) is not None:
        pytest.skip(why)
    with slurm.cluster() as found:
        yield found
