"""Generated identifiers and secrets have the forms AWS used, and none begins with '-', which a
command line would take for an option (``opennimble sessions delete STUDIO -n8w...``)."""

from __future__ import annotations

import re

from opennimble.domain import ids

DRAWS = 5000  # a leading '-' is 1 in 64 per draw: all 5,000 free of one by chance is ~1e-34


def test_resource_ids_are_22_url_safe_characters_never_beginning_with_a_dash() -> None:
    made = [ids.resource_id() for _ in range(DRAWS)]
    assert all(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{21}", rid) for rid in made)
    assert len(set(made)) == DRAWS


def test_secret_access_keys_are_40_characters_never_beginning_with_a_dash() -> None:
    made = [ids.secret_access_key() for _ in range(DRAWS)]
    assert all(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{39}", key) for key in made)
