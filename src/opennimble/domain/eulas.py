"""End-user license agreements: an installation-managed catalogue, accepted per studio and user.

The catalogue is part of the settings (``[eulas.ID]`` tables: a name, the text inline or in a
file, and the ``images``, ec2ImageIds, that require it). At every start the server mirrors it
into the database: new EULAs are added, changed ones get a new ``updatedAt``, removed ones
leave the catalogue (acceptances already given stay on record). A streaming image's ``eulaIds``
are the EULAs of the catalogue that name its ec2ImageId, so a change of the catalogue applies
to existing images too. A session from such an image is refused unless its owner has accepted
every one of them in the session's studio.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from opennimble import config, errors
from opennimble.domain import access
from opennimble.store import eulas

log = logging.getLogger("opennimble.eulas")

Row = dict[str, Any]


def sync_catalogue(
    conn: sa.Connection, catalogue: Mapping[str, config.EulaSetting], now: int
) -> None:
    """Make the database's catalogue equal to the configured one."""
    current = {row["eula_id"]: row for row in eulas.all_eulas(conn)}
    for eula_id, setting in catalogue.items():
        values = {"name": setting.name, "content": setting.text(), "ec2_image_ids": setting.images}
        row = current.get(eula_id)
        if row is None:
            eulas.insert(conn, {"eula_id": eula_id, **values, "created_at": now, "updated_at": now})
            log.info("EULA %s added to the catalogue", eula_id)
        elif any(row[key] != value for key, value in values.items()):
            eulas.update(conn, eula_id, **values, updated_at=now)
            log.info("EULA %s updated", eula_id)
    removed = set(current) - set(catalogue)
    if removed:
        eulas.delete(conn, removed)
        log.info("EULAs %s left the catalogue", ", ".join(sorted(removed)))


def required_by_image(conn: sa.Connection, ec2_image_id: str | None) -> list[str]:
    """The ids of the EULAs that a streaming image of ``ec2_image_id`` requires."""
    if not ec2_image_id:
        return []
    # remembered while the access generation stays the same (a change of the catalogue bumps it)
    catalogue = access.remembered(conn, ("eulas", ""), lambda: eulas.requirements(conn))
    return [eula_id for eula_id, images in catalogue if ec2_image_id in images]


def require_accepted(conn: sa.Connection, studio_id: str, owner_id: str, image: Row) -> None:
    """Refuse a session from ``image`` for an owner who has not accepted all its EULAs."""
    needed = required_by_image(conn, image["attrs"].get("ec2ImageId"))
    if not needed:
        return
    done = eulas.accepted(conn, studio_id, owner_id)
    missing = [eula_id for eula_id in needed if eula_id not in done]
    if missing:
        names = ", ".join(missing)
        raise errors.AccessDeniedException(
            f"User {owner_id} has not accepted the EULAs that streaming image "
            f"{image['resource_id']} requires: {names}. The owner of the session must accept "
            "them first (AcceptEulas in this studio)",
            code="EulaNotAccepted",
            context={"eulaIds": ",".join(missing), "principalId": owner_id},
        )
