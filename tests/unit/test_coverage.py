"""The operations table in the docs is the generated one, and handlers match the model."""

from __future__ import annotations

import pathlib

from opennimble.api import coverage, registry
from opennimble.protocol import model
from tests.support import called

DOC = pathlib.Path(__file__).parents[2] / "docs" / "operations.md"
REGENERATE = (
    "run: opennimble operations --tested tests/acceptance/tested-operations.txt "
    "> docs/operations.md"
)


def test_docs_operations_table_is_current() -> None:
    assert DOC.read_text() == coverage.table(called.committed()), REGENERATE


def test_every_handler_is_an_operation_of_the_model() -> None:
    assert set(registry.HANDLERS) <= set(model.operations())
    assert registry.operation_name("start_studio_sso_configuration_repair") == (
        "StartStudioSSOConfigurationRepair"
    )


def test_every_operation_of_the_model_has_a_handler_but_the_pending_ones() -> None:
    """Only the operations other work will bring (named in coverage.PENDING) may lack one."""
    assert coverage.missing() <= set(coverage.PENDING), (
        f"operations of the model without a handler: {sorted(coverage.missing())}"
    )


def test_every_operation_with_a_handler_is_exercised_by_the_acceptance_suite() -> None:
    untested = set(registry.HANDLERS) - called.committed()
    assert not untested, f"implemented but not in the tested list: {sorted(untested)}"
