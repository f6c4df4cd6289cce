"""The operations table in the docs is the generated one, and handlers match the model."""

from __future__ import annotations

import pathlib

from opennimble.api import coverage, registry
from opennimble.protocol import model

DOC = pathlib.Path(__file__).parents[2] / "docs" / "operations.md"


def test_docs_operations_table_is_current() -> None:
    assert DOC.read_text() == coverage.table(), "run: opennimble operations > docs/operations.md"


def test_every_handler_is_an_operation_of_the_model() -> None:
    assert set(registry.HANDLERS) <= set(model.operations())
    assert registry.operation_name("start_studio_sso_configuration_repair") == (
        "StartStudioSSOConfigurationRepair"
    )
