"""Tags: key-value labels on studios, launch profiles, streaming images, studio components and
streaming sessions, addressed by ARN.

The model puts no limits on tags; we apply AWS's usual ones: at most 50 tags per resource,
keys of 1 to 128 characters, values of at most 256, and keys starting with ``aws:`` are
reserved. Tags given at creation are checked the same way.
"""

from __future__ import annotations

import dataclasses

from opennimble import errors
from opennimble.protocol import validate

MAX_TAGS = 50
MAX_KEY = 128
MAX_VALUE = 256
RESERVED_PREFIX = "aws:"
SESSION_ARN_TYPE = "streaming-session"
BACKUP_ARN_TYPE = "streaming-session-backup"


@dataclasses.dataclass(frozen=True)
class Arn:
    resource_type: str
    resource_id: str


def parse_arn(arn: str, region: str, account_id: str) -> Arn:
    """``arn:aws:nimble:{region}:{account}:{type}/{id}`` of this installation, or an error."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[:3] != ["arn", "aws", "nimble"] or "/" not in parts[5]:
        raise validate.exception(
            [
                (
                    "resourceArn",
                    f"Value '{arn}' at 'resourceArn' is not a nimble ARN "
                    "(arn:aws:nimble:REGION:ACCOUNT:TYPE/ID)",
                )
            ]
        )
    resource_type, _, resource_id = parts[5].partition("/")
    if parts[3] != region or parts[4] != account_id or not resource_id:
        raise errors.ResourceNotFoundException(
            f"Resource '{arn}' does not exist: this server serves region {region}, "
            f"account {account_id}",
            context={"resourceArn": arn},
        )
    return Arn(resource_type, resource_id)


def problems(tags: dict[str, str], field: str = "tags") -> list[validate.Problem]:
    """What is wrong with a set of tags (each problem names its field)."""
    out: list[validate.Problem] = []
    if len(tags) > MAX_TAGS:
        out.append((field, f"A resource has at most {MAX_TAGS} tags; '{field}' has {len(tags)}"))
    for key, value in tags.items():
        if not 1 <= len(key) <= MAX_KEY:
            out.append((f"{field}.key", f"Tag key '{key}' must be 1 to {MAX_KEY} characters"))
        elif key.lower().startswith(RESERVED_PREFIX):
            out.append((f"{field}.key", f"Tag key '{key}': the prefix 'aws:' is reserved"))
        if len(value) > MAX_VALUE:
            out.append(
                (
                    f"{field}.{key}",
                    f"The value of tag '{key}' is longer than {MAX_VALUE} characters",
                )
            )
    return out


def check(tags: dict[str, str] | None, field: str = "tags") -> dict[str, str]:
    """The tags, or a ValidationException naming every problem."""
    found = problems(tags or {}, field)
    if found:
        raise validate.exception(found)
    return dict(tags or {})
