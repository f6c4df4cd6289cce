"""Service quotas of the installation: how many of a thing a studio or an owner may have.

Each quota is a setting (see :class:`Quotas`); reaching one answers
ServiceQuotaExceededException (402) that names the quota, its setting and its value. Sessions
count until they are DELETED, resources until they are DELETED.
"""

from __future__ import annotations

import dataclasses

import sqlalchemy as sa

from opennimble import config, errors
from opennimble.domain import resources
from opennimble.store import quota_counters as counters
from opennimble.store import resources as resource_store


@dataclasses.dataclass(frozen=True)
class Quotas:
    sessions_per_studio: int = 1000
    sessions_per_owner: int = 200
    launch_profiles_per_studio: int = 50
    streaming_images_per_studio: int = 10

    @classmethod
    def from_settings(cls, settings: config.Settings) -> Quotas:
        return cls(
            sessions_per_studio=settings.max_sessions_per_studio,
            sessions_per_owner=settings.max_sessions_per_owner,
            launch_profiles_per_studio=settings.max_launch_profiles_per_studio,
            streaming_images_per_studio=settings.max_streaming_images_per_studio,
        )


DEFAULTS = Quotas()


def _exceeded(
    label: str, setting: str, limit: int, whose: str, count: int
) -> errors.ServiceQuotaExceededException:
    return errors.ServiceQuotaExceededException(
        f"Quota reached: {label} is {limit} (setting {setting}) and {whose} has {count}; "
        "delete some or ask the operator to raise the quota",
        code="ServiceQuotaExceeded",
        context={"quota": setting, "limit": str(limit)},
    )


def check_resource(
    conn: sa.Connection, quotas: Quotas, kind: resources.Kind, studio_id: str
) -> None:
    """Room for one more launch profile or streaming image in the studio (other kinds have
    no quota)."""
    quota = {
        resources.LAUNCH_PROFILE.name: (
            "launch profiles per studio",
            "max_launch_profiles_per_studio",
            quotas.launch_profiles_per_studio,
        ),
        resources.STREAMING_IMAGE.name: (
            "streaming images per studio",
            "max_streaming_images_per_studio",
            quotas.streaming_images_per_studio,
        ),
    }.get(kind.name)
    if quota is None:
        return
    label, setting, limit = quota
    resource_store.lock_studio(conn, studio_id)
    count = resource_store.count_live(conn, kind.name, studio_id)
    if count >= limit:
        raise _exceeded(label, setting, limit, f"studio {studio_id}", count)


def take_session(conn: sa.Connection, quotas: Quotas, studio_id: str, owner: str) -> None:
    """Count one more session against the studio's and the owner's quotas, or refuse.

    Each quota is a counter, striped over a few rows, taken with a conditional UPDATE of one
    of them in the creating transaction (:mod:`opennimble.store.quota_counters`): no count over
    the studio's sessions, concurrent creates never both take the last place, and they mostly
    lock different rows. A refusal rolls the transaction back, and with it what it took.
    """
    checks = (
        (
            counters.STUDIO,
            "streaming sessions per studio",
            "max_sessions_per_studio",
            quotas.sessions_per_studio,
            f"studio {studio_id}",
        ),
        (
            owner,
            "streaming sessions per owner in a studio",
            "max_sessions_per_owner",
            quotas.sessions_per_owner,
            f"user {owner}",
        ),
    )
    for who, label, setting, limit, whose in checks:
        if not counters.take(conn, studio_id, who, limit):
            count = counters.used(conn, studio_id, who) or 0
            raise _exceeded(label, setting, limit, whose, count)


def release_session(conn: sa.Connection, studio_id: str, owner: str) -> None:
    """A session became DELETED: it no longer counts against its studio's and owner's quotas."""
    counters.give_back(conn, studio_id, owner)
