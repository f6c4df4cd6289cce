"""A clock that tests move forward, for a real server process.

Run as ``python -m tests.support.clocked OFFSET_FILE serve ...`` (``Server(clock=...)`` does),
this module runs the real ``opennimble`` command with the server's clock (the ``now`` that
``server.Root`` gives the API, the reconciler and the stream gateway) replaced by system time
plus an offset, in microseconds, read from OFFSET_FILE whenever the server asks for the time.
A test moves time with :meth:`ControlledClock.advance`; the server's next reconciler pass
(every ``reconcile_interval``) sees it, so time limits, stream expiry and purges are observed
at once, with nothing sleeping in their place. Time only moves forward, as it does on a server.

The test process must sign its requests with the same shifted time, or SigV4's 15-minute skew
check refuses them: a fixture patches ``botocore.auth.get_current_datetime`` with
:meth:`ControlledClock.signing_time` for as long as the server runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import os
import pathlib
import sys
from collections.abc import Iterator

from opennimble import cli, server
from opennimble import clock as system_clock


class OffsetClock:
    """The server side: system time plus the offset the test wrote last."""

    def __init__(self, offset_file: pathlib.Path) -> None:
        self.offset_file = offset_file

    def __call__(self) -> system_clock.Micros:
        return system_clock.system_now() + int(self.offset_file.read_text())


@dataclasses.dataclass
class ControlledClock:
    """The test side: the offset, written where the server reads it."""

    offset_file: pathlib.Path
    offset: datetime.timedelta = datetime.timedelta(0)

    def __post_init__(self) -> None:
        self._write()

    def now(self) -> datetime.datetime:
        """The server's time now (UTC)."""
        return datetime.datetime.now(datetime.UTC) + self.offset

    def advance(
        self, *, days: float = 0, hours: float = 0, minutes: float = 0, seconds: float = 0
    ) -> datetime.datetime:
        """Move the server's time forward; returns the new time."""
        step = datetime.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
        if step <= datetime.timedelta(0):
            raise ValueError("time only moves forward")
        self.offset += step
        self._write()
        return self.now()

    def signing_time(self, remove_tzinfo: bool = True) -> datetime.datetime:
        """A stand-in for ``botocore.auth.get_current_datetime`` (same signature)."""
        now = self.now()
        return now.replace(tzinfo=None) if remove_tzinfo else now

    def _write(self) -> None:
        """Replace the file at once, so that the server never reads half of it."""
        micros = self.offset // datetime.timedelta(microseconds=1)
        partial = self.offset_file.with_name(self.offset_file.name + ".new")
        partial.write_text(str(micros))
        os.replace(partial, self.offset_file)


@contextlib.contextmanager
def signing(directory: pathlib.Path) -> Iterator[ControlledClock]:
    """A clock for a server (its offset file in ``directory``) with which boto3 in this
    process signs its requests for as long as the context lasts."""
    import botocore.auth  # the test side only: the server process does without
    import pytest

    controlled = ControlledClock(directory / "offset")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(botocore.auth, "get_current_datetime", controlled.signing_time)
        yield controlled


def main() -> None:
    offset_file = pathlib.Path(sys.argv.pop(1))
    server.Root = functools.partial(server.Root, now=OffsetClock(offset_file))
    cli.main()


if __name__ == "__main__":
    main()
