"""One module per resource; importing this package registers every handler."""

from opennimble.api.operations import (
    launch_profiles,
    membership,
    sessions,
    streaming_images,
    streams,
    studio_components,
    studios,
)

__all__ = [
    "launch_profiles",
    "membership",
    "sessions",
    "streaming_images",
    "streams",
    "studio_components",
    "studios",
]
