"""Standing in a studio: a studio administrator manages only users the studio already has (a
membership of the studio or of one of its launch profiles); only an operator brings a user into
a studio. So the admin of one studio cannot pull another studio's artists, or any user of the
identity store, into theirs, nor create sessions owned by them."""

from __future__ import annotations

from typing import Any

from tests.support import expect
from tests.support.server import User
from tests.support.world import World

PRINCIPAL = "members.{}.member.principalId"


def lp_member_ids(client: Any, studio_id: str, launch_profile_id: str) -> set[str]:
    pages = client.get_paginator("list_launch_profile_members").paginate(
        studioId=studio_id, launchProfileId=launch_profile_id
    )
    return {m["principalId"] for page in pages for m in page["members"]}


def studio_member_ids(client: Any, studio_id: str) -> set[str]:
    pages = client.get_paginator("list_studio_members").paginate(studioId=studio_id)
    return {m["principalId"] for page in pages for m in page["members"]}


def put_lp(client: Any, world: World, *users: User) -> Any:
    return client.put_launch_profile_members(
        studioId=world.studio.studio_id,
        launchProfileId=world.studio.launch_profile_id,
        identityStoreId=world.studio.admin.identity_store_id,
        members=[{"principalId": u.user_id, "persona": "USER"} for u in users],
    )


def put_admins(client: Any, world: World, *users: User) -> Any:
    return client.put_studio_members(
        studioId=world.studio.studio_id,
        identityStoreId=world.studio.admin.identity_store_id,
        members=[{"principalId": u.user_id, "persona": "ADMINISTRATOR"} for u in users],
    )


def test_an_admin_cannot_pull_another_studios_user_into_the_studio(world: World) -> None:
    admin = world.studio.admin.client()
    sid, lp = world.studio.studio_id, world.studio.launch_profile_id
    # the foreign studio's administrator has standing there, none here; the outsider none at all
    for stranger in (world.foreign.admin, world.outsider):
        for put in (put_lp, put_admins):
            expect.error(
                lambda p=put, s=stranger: p(admin, world, s),
                "AccessDeniedException",
                world.studio.admin.user_id,
                stranger.user_id,
                PRINCIPAL.format(1),
                "operator",
            )
    # one stranger in a batch refuses the whole batch, naming only the stranger's field
    refused = expect.error(
        lambda: put_lp(admin, world, world.artist2, world.outsider),
        "AccessDeniedException",
        PRINCIPAL.format(2),
        world.outsider.user_id,
    )
    assert PRINCIPAL.format(1) not in refused["Error"]["Message"]
    assert world.outsider.user_id not in lp_member_ids(admin, sid, lp)
    assert world.foreign.admin.user_id not in lp_member_ids(admin, sid, lp)
    assert world.outsider.user_id not in studio_member_ids(admin, sid)
    # ... and the stranger still cannot see the studio
    expect.error(
        lambda: world.outsider.client().get_studio(studioId=sid),
        "AccessDeniedException",
        world.outsider.user_id,
    )


def test_an_admin_cannot_create_sessions_owned_by_a_user_without_standing(world: World) -> None:
    admin = world.studio.admin.client()
    sid, lp = world.studio.studio_id, world.studio.launch_profile_id
    strangers = (world.foreign.admin, world.outsider, world.operator)
    for owner in strangers:
        expect.error(
            lambda o=owner: admin.create_streaming_session(
                studioId=sid, launchProfileId=lp, ownedBy=o.user_id
            ),
            "ValidationException",
            "ownedBy",
            owner.user_id,
        )
    listed = admin.list_streaming_sessions(studioId=sid)["sessions"]
    owners = {s["ownedBy"] for s in listed}
    assert not owners & {u.user_id for u in strangers}


def test_the_operator_brings_a_user_in_and_the_admin_manages_them(world: World) -> None:
    admin = world.studio.admin.client()
    sid = world.studio.studio_id
    newcomer = world.server.user("newcomer")
    expect.error(lambda: put_lp(admin, world, newcomer), "AccessDeniedException", newcomer.user_id)
    put_lp(world.operator.client(), world, newcomer)  # the operator brings them in
    assert newcomer.client().get_studio(studioId=sid)["studio"]["studioId"] == sid
    # from now on the studio's administrator manages them: here, makes them an administrator
    put_admins(admin, world, newcomer)
    assert newcomer.user_id in studio_member_ids(admin, sid)
    admin.delete_studio_member(studioId=sid, principalId=newcomer.user_id)
    admin.delete_launch_profile_member(
        studioId=sid, launchProfileId=world.studio.launch_profile_id, principalId=newcomer.user_id
    )
    # their last membership gone, they have no standing left: the admin cannot bring them back
    expect.error(lambda: put_lp(admin, world, newcomer), "AccessDeniedException", newcomer.user_id)
    expect.error(
        lambda: newcomer.client().get_studio(studioId=sid),
        "AccessDeniedException",
        newcomer.user_id,
    )
