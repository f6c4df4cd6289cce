"""The fuzzer's server, its settings profiles and the count of fuzzed calls it reports.

Profiles (``OPENNIMBLE_FUZZ_PROFILE``): ``ci`` (the default, a few minutes in all) and
``long`` (many more examples per operation, for a deliberate hunt).
"""

from __future__ import annotations

import collections
import os
import pathlib
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from tests.support import server as support
from tests.support import world as worlds

settings.register_profile(
    "ci",
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
settings.register_profile(
    "long",
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
settings.load_profile(os.environ.get("OPENNIMBLE_FUZZ_PROFILE", "ci"))

# what the fuzzer sent and how it was answered, for the summary line
CALLS: collections.Counter[str] = collections.Counter()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[worlds.World]:
    """A server and a studio for the fuzzer. Its desktops cannot start (no Xvnc): the fuzzer
    tries the API, not the desktops, and must leave no desktop behind however it calls."""
    data_dir: pathlib.Path = tmp_path_factory.mktemp("fuzz") / "data"
    srv = support.Server(
        data_dir,
        env={
            "OPENNIMBLE_PROVIDERS__LOCAL__XVNC": "/nonexistent/Xvnc",
            "OPENNIMBLE_MAX_SESSIONS_PER_OWNER": "3",
        },
    )
    with worlds.served(srv) as built:
        yield built


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not CALLS["sent"]:
        return
    answers = ", ".join(
        f"{key.removeprefix('answer ')} {n}"
        for key, n in sorted(CALLS.items())
        if key.startswith("answer ")
    )
    terminalreporter.write_line(
        f"fuzzer: {CALLS['sent']} fuzzed calls over {CALLS['operations']} operations "
        f"({CALLS['via boto3']} through boto3, {CALLS['via raw']} raw signed; "
        f"{CALLS['unsendable']} more refused by the client before sending); answers: {answers}"
    )
