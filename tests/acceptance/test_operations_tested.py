"""The operations the acceptance suite exercises, compared with the committed list behind the
*tested* column of docs/operations.md, and the model's waiters, each of which must have
succeeded somewhere. Runs after every other test (see conftest.py), and only when the whole
acceptance suite ran and passed: a partial run proves nothing either way."""

from __future__ import annotations

import pathlib

import boto3
import pytest

from tests.support import called

ACCEPTANCE = pathlib.Path(__file__).parent


def _whole_suite_ran(session: pytest.Session) -> str | None:
    """Why this run cannot tell (None: it can)."""
    ran = {pathlib.Path(str(item.path)).name for item in session.items}
    modules = {p.name for p in ACCEPTANCE.glob("test_*.py")}
    if not modules <= ran:
        return f"only part of the acceptance suite ran (missing {sorted(modules - ran)})"
    if session.config.option.keyword or session.config.option.markexpr:
        return "tests were selected with -k or -m"
    if session.testsfailed:
        return "other tests failed"
    return None


def test_the_tested_list_is_what_the_suite_exercises(request: pytest.FixtureRequest) -> None:
    reason = _whole_suite_ran(request.session)
    if reason:
        pytest.skip(reason)
    exercised = called.succeeded()
    listed = called.committed()
    assert exercised == listed, (
        f"{called.TESTED_LIST.name} is out of date; exercised but not listed: "
        f"{sorted(exercised - listed)}; listed but not exercised: {sorted(listed - exercised)}. "
        f"Its content should be:\n" + "\n".join(sorted(exercised))
    )


def test_every_waiter_of_the_model_succeeds_somewhere(request: pytest.FixtureRequest) -> None:
    reason = _whole_suite_ran(request.session)
    if reason:
        pytest.skip(reason)
    names = set(boto3.client("nimble", region_name="us-west-2").waiter_names)
    assert names, "the model has no waiters?"
    assert names <= called.WAITED, f"waiters never seen succeed: {sorted(names - called.WAITED)}"
