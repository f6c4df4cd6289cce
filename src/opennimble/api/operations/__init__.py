"""One module per resource; importing this package registers every handler."""

from opennimble.api.operations import (
    backups,
    eulas,
    launch_profile_details,
    launch_profiles,
    membership,
    sessions,
    sso,
    streaming_images,
    streams,
    studio_components,
    studios,
    tags,
)

__all__ = [
    "backups",
    "eulas",
    "launch_profile_details",
    "launch_profiles",
    "membership",
    "sessions",
    "sso",
    "streaming_images",
    "streams",
    "studio_components",
    "studios",
    "tags",
]
