"""Regressions for what the fuzzer (tests/fuzz) found, each as a user's boto3 call shows it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import expect
from tests.support.world import World


@pytest.mark.parametrize(
    "configuration",
    [
        {},
        {
            "sharedFileSystemConfiguration": {"fileSystemId": "fs-1"},
            "computeFarmConfiguration": {"endpoint": "x"},
        },
    ],
)
def test_a_union_with_other_than_one_member_is_refused(
    world: World, configuration: dict[str, Any]
) -> None:
    """A component's configuration is a union: exactly one member. An empty one was stored,
    and every later read of the component failed in botocore ("must have one and only one
    member set")."""
    admin = world.studio.admin.client(validate=False)
    ids = {"studioId": world.studio.studio_id, "studioComponentId": world.studio.component_id}
    expect.error(
        lambda: admin.update_studio_component(**ids, configuration=configuration),
        "ValidationException",
        "configuration",
        "exactly one",
    )
    expect.error(
        lambda: admin.create_studio_component(
            studioId=world.studio.studio_id,
            name="union",
            type="SHARED_FILE_SYSTEM",
            configuration=configuration,
        ),
        "ValidationException",
        "exactly one",
    )
    assert admin.get_studio_component(**ids)["studioComponent"]["studioComponentId"]
