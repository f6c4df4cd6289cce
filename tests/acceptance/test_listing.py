"""Listings: streaming sessions across pages with their filters, and the studio's resources."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tests.support.world import World

PAGE_SIZE = 3  # the acceptance server's page size


@dataclasses.dataclass
class Made:
    """Sessions this module created, in creation order, with who owns and who created each."""

    ids: list[str]
    owner: dict[str, str]
    creator: dict[str, str]

    def where(self, owner: str | None = None, creator: str | None = None) -> list[str]:
        return [
            i
            for i in self.ids
            if owner in (None, self.owner[i]) and creator in (None, self.creator[i])
        ]


@pytest.fixture(scope="module")
def made(world: World) -> Made:
    artist, artist2 = world.artist, world.artist2
    admin, operator = world.studio.admin, world.operator
    plan = [
        (artist, artist),
        (artist2, artist2),
        (admin, artist),
        (admin, artist2),
        (artist, artist),
        (operator, artist2),
        (admin, artist),
    ]
    result = Made([], {}, {})
    for creator, owner in plan:
        session = creator.client().create_streaming_session(
            studioId=world.studio.studio_id,
            launchProfileId=world.studio.launch_profile_id,
            ownedBy=owner.user_id,
        )["session"]
        result.ids.append(session["sessionId"])
        result.owner[session["sessionId"]] = owner.user_id
        result.creator[session["sessionId"]] = creator.user_id
    return result


def pages(client: Any, **kwargs: Any) -> list[dict[str, Any]]:
    paginator = client.get_paginator("list_streaming_sessions")
    return list(paginator.paginate(**kwargs))


def ids(client: Any, **kwargs: Any) -> list[str]:
    return [s["sessionId"] for page in pages(client, **kwargs) for s in page["sessions"]]


def check_paging(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pages are well formed; return their sessions in order."""
    assert found, "no page at all"
    for page in found[:-1]:
        assert 1 <= len(page["sessions"]) <= PAGE_SIZE
        assert page.get("nextToken")
    assert 0 <= len(found[-1]["sessions"]) <= PAGE_SIZE
    assert "nextToken" not in found[-1]
    sessions = [s for page in found for s in page["sessions"]]
    keys = [(s["createdAt"], s["sessionId"]) for s in sessions]
    assert len({s["sessionId"] for s in sessions}) == len(sessions), "a session is repeated"
    assert keys == sorted(keys), "not in order of creation time, then id"
    return sessions


def error_message(exc: pytest.ExceptionInfo[Any]) -> str:
    return str(exc.value.response["Error"]["Message"])


# ---- ListStreamingSessions ----------------------------------------------------------------------


def test_admin_pages_through_every_session(world: World, made: Made) -> None:
    admin = world.studio.admin.client()
    sessions = check_paging(pages(admin, studioId=world.studio.studio_id))
    listed = [s["sessionId"] for s in sessions]
    assert [i for i in listed if i in made.ids] == made.ids  # all of them, in creation order
    for s in sessions:
        if s["sessionId"] in made.ids:
            assert s["ownedBy"] == made.owner[s["sessionId"]]
            assert s["createdBy"] == made.creator[s["sessionId"]]


def test_session_ids_filter_across_pages(world: World, made: Made) -> None:
    admin = world.studio.admin.client()
    found = pages(admin, studioId=world.studio.studio_id, sessionIds=",".join(made.ids))
    assert len(found) >= 3  # seven sessions, at most three a page
    assert [s["sessionId"] for s in check_paging(found)] == made.ids
    # the ids may be given in any order, with spaces after the commas
    some = [made.ids[5], made.ids[0], made.ids[3]]
    listed = ids(admin, studioId=world.studio.studio_id, sessionIds=", ".join(some))
    assert listed == [made.ids[0], made.ids[3], made.ids[5]]


@pytest.mark.parametrize(
    ("owner", "creator"),
    [
        ("artist", None),
        ("artist2", None),
        (None, "admin"),
        (None, "operator"),
        (None, "artist"),
        ("artist", "admin"),
        ("artist2", "admin"),
        ("artist2", "artist"),
    ],
)
def test_owned_by_and_created_by_filters(
    world: World, made: Made, owner: str | None, creator: str | None
) -> None:
    users = {
        "artist": world.artist,
        "artist2": world.artist2,
        "admin": world.studio.admin,
        "operator": world.operator,
    }
    owner_id = users[owner].user_id if owner else None
    creator_id = users[creator].user_id if creator else None
    filters = {"ownedBy": owner_id, "createdBy": creator_id}
    filters = {k: v for k, v in filters.items() if v is not None}
    admin = world.studio.admin.client()
    found = check_paging(pages(admin, studioId=world.studio.studio_id, **filters))
    for s in found:
        assert s["ownedBy"] == (owner_id or s["ownedBy"])
        assert s["createdBy"] == (creator_id or s["createdBy"])
    expected = made.where(owner_id, creator_id)
    assert [s["sessionId"] for s in found if s["sessionId"] in made.ids] == expected
    # combined with sessionIds, exactly the sessions asked for that match every filter
    listed = ids(admin, studioId=world.studio.studio_id, sessionIds=",".join(made.ids), **filters)
    assert listed == expected


def test_session_ids_combined_with_owner(world: World, made: Made) -> None:
    admin = world.studio.admin.client()
    first_three = made.ids[:3]
    listed = ids(
        admin,
        studioId=world.studio.studio_id,
        sessionIds=",".join(first_three),
        ownedBy=world.artist.user_id,
    )
    assert listed == [made.ids[0], made.ids[2]]


def test_user_sees_only_own_sessions(world: World, made: Made) -> None:
    for user in (world.artist, world.artist2):
        client = user.client()
        found = check_paging(pages(client, studioId=world.studio.studio_id))
        assert found, f"{user.name} sees none of their sessions"
        assert {s["ownedBy"] for s in found} == {user.user_id}
        mine = [s["sessionId"] for s in found if s["sessionId"] in made.ids]
        assert mine == made.where(owner=user.user_id)
        # asking for their own is the same; asking for all ids still shows only their own
        assert ids(client, studioId=world.studio.studio_id, ownedBy=user.user_id) == [
            s["sessionId"] for s in found
        ]
        assert ids(
            client, studioId=world.studio.studio_id, sessionIds=",".join(made.ids)
        ) == made.where(owner=user.user_id)
        created_by_admin = ids(
            client,
            studioId=world.studio.studio_id,
            createdBy=world.studio.admin.user_id,
            sessionIds=",".join(made.ids),
        )
        assert created_by_admin == made.where(user.user_id, world.studio.admin.user_id)


def test_user_may_not_list_another_owners_sessions(world: World, made: Made) -> None:
    artist = world.artist.client()
    with pytest.raises(artist.exceptions.AccessDeniedException):
        artist.list_streaming_sessions(
            studioId=world.studio.studio_id, ownedBy=world.artist2.user_id
        )
    outsider = world.outsider.client()
    with pytest.raises(outsider.exceptions.AccessDeniedException):
        outsider.list_streaming_sessions(studioId=world.studio.studio_id)


def test_tampered_next_token_is_refused(world: World, made: Made) -> None:
    admin = world.studio.admin.client()
    sid = world.studio.studio_id
    token = admin.list_streaming_sessions(studioId=sid, sessionIds=",".join(made.ids))["nextToken"]
    # the same token goes on to the second page
    second = admin.list_streaming_sessions(
        studioId=sid, sessionIds=",".join(made.ids), nextToken=token
    )
    assert [s["sessionId"] for s in second["sessions"]] == made.ids[3:6]

    middle = len(token) // 2
    tampered = token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]
    for bad in (tampered, token[:-4], "not-a-token", token + "AAAA"):
        with pytest.raises(admin.exceptions.ValidationException) as exc:
            admin.list_streaming_sessions(
                studioId=sid, sessionIds=",".join(made.ids), nextToken=bad
            )
        assert "nextToken" in error_message(exc)


def test_next_token_of_another_listing_is_refused(world: World, made: Made) -> None:
    admin = world.studio.admin.client()
    sid = world.studio.studio_id
    token = admin.list_streaming_sessions(studioId=sid, sessionIds=",".join(made.ids))["nextToken"]
    others: list[dict[str, Any]] = [
        {},
        {"ownedBy": world.artist.user_id},
        {"createdBy": world.studio.admin.user_id},
        {"sessionIds": ",".join(made.ids[:4])},
    ]
    for filters in others:
        with pytest.raises(admin.exceptions.ValidationException) as exc:
            admin.list_streaming_sessions(studioId=sid, nextToken=token, **filters)
        assert "nextToken" in error_message(exc)
    # the same listing asked by another caller is another listing too
    operator = world.operator.client()
    with pytest.raises(operator.exceptions.ValidationException):
        operator.list_streaming_sessions(
            studioId=sid, sessionIds=",".join(made.ids), nextToken=token
        )
    # and a token of another operation
    members = admin.list_launch_profile_members(
        studioId=sid, launchProfileId=world.studio.launch_profile_id, maxResults=1
    )["nextToken"]
    with pytest.raises(admin.exceptions.ValidationException):
        admin.list_streaming_sessions(studioId=sid, nextToken=members)


def test_listing_is_stable_while_sessions_are_created(world: World, made: Made) -> None:
    admin = world.studio.admin.client()
    sid = world.studio.studio_id
    before = ids(admin, studioId=sid)
    first = admin.list_streaming_sessions(studioId=sid)
    extra = world.artist.client().create_streaming_session(
        studioId=sid, launchProfileId=world.studio.launch_profile_id
    )["session"]["sessionId"]
    rest = ids(admin, studioId=sid, PaginationConfig={"StartingToken": first["nextToken"]})
    listed = [s["sessionId"] for s in first["sessions"]] + rest
    assert len(listed) == len(set(listed))
    assert [i for i in listed if i != extra] == before  # nothing repeated, nothing skipped
    assert listed[-1] == extra  # the newest comes last


# ---- the studio's resources ---------------------------------------------------------------------


def test_list_studios(world: World) -> None:
    operator = world.operator.client()
    found = list(operator.get_paginator("list_studios").paginate())
    assert "nextToken" not in found[-1]
    studios = {s["studioId"]: s for page in found for s in page["studios"]}
    assert set(studios) == {world.studio.studio_id, world.foreign.studio_id}
    assert studios[world.studio.studio_id]["state"] == "READY"
    assert studios[world.studio.studio_id]["arn"].endswith(f":studio/{world.studio.studio_id}")
    for user in (world.studio.admin, world.artist, world.artist2):
        seen = user.client().list_studios()["studios"]
        assert [s["studioId"] for s in seen] == [world.studio.studio_id]
    seen = world.foreign.admin.client().list_studios()["studios"]
    assert [s["studioId"] for s in seen] == [world.foreign.studio_id]
    assert world.outsider.client().list_studios()["studios"] == []


def test_list_launch_profiles(world: World) -> None:
    sid = world.studio.studio_id
    for user in (world.studio.admin, world.operator, world.artist, world.artist2):
        profiles = user.client().list_launch_profiles(studioId=sid, maxResults=10)["launchProfiles"]
        assert [p["launchProfileId"] for p in profiles] == [world.studio.launch_profile_id]
        assert profiles[0]["streamConfiguration"]["streamingImageIds"] == [world.studio.image_id]
    admin = world.studio.admin.client()
    of_artist = admin.list_launch_profiles(studioId=sid, principalId=world.artist.user_id)
    assert [p["launchProfileId"] for p in of_artist["launchProfiles"]] == [
        world.studio.launch_profile_id
    ]
    of_outsider = admin.list_launch_profiles(studioId=sid, principalId=world.outsider.user_id)
    assert of_outsider["launchProfiles"] == []
    foreign = world.foreign.admin.client()
    with pytest.raises(foreign.exceptions.AccessDeniedException):
        foreign.list_launch_profiles(studioId=sid)
    outsider = world.outsider.client()
    with pytest.raises(outsider.exceptions.AccessDeniedException):
        outsider.list_launch_profiles(studioId=sid)


def test_list_studio_members(world: World) -> None:
    sid = world.studio.studio_id
    admin = world.studio.admin.client()
    members = admin.list_studio_members(studioId=sid, maxResults=1)["members"]
    assert members == [
        {
            "principalId": world.studio.admin.user_id,
            "persona": "ADMINISTRATOR",
            "identityStoreId": world.studio.admin.identity_store_id,
            "sid": members[0]["sid"],
        }
    ]
    assert members[0]["sid"].startswith("S-1-")
    member = admin.get_studio_member(studioId=sid, principalId=world.studio.admin.user_id)
    assert member["member"] == members[0]
    with pytest.raises(admin.exceptions.ResourceNotFoundException):
        admin.get_studio_member(studioId=sid, principalId=world.artist.user_id)
    with pytest.raises(admin.exceptions.AccessDeniedException):
        world.outsider.client().list_studio_members(studioId=sid)


def test_list_launch_profile_members(world: World) -> None:
    sid, lp = world.studio.studio_id, world.studio.launch_profile_id
    admin = world.studio.admin.client()
    paginator = admin.get_paginator("list_launch_profile_members")
    found = list(
        paginator.paginate(studioId=sid, launchProfileId=lp, PaginationConfig={"PageSize": 1})
    )
    assert [len(p["members"]) for p in found] == [1, 1]
    assert "nextToken" not in found[-1]
    members = {m["principalId"]: m for p in found for m in p["members"]}
    assert set(members) == {world.artist.user_id, world.artist2.user_id}
    assert {m["persona"] for m in members.values()} == {"USER"}
    for user in (world.studio.admin, world.artist):
        got = user.client().get_launch_profile_member(
            studioId=sid, launchProfileId=lp, principalId=world.artist2.user_id
        )["member"]
        assert got == members[world.artist2.user_id]
    with pytest.raises(admin.exceptions.ResourceNotFoundException):
        admin.get_launch_profile_member(
            studioId=sid, launchProfileId=lp, principalId=world.outsider.user_id
        )


def test_list_streaming_images(world: World) -> None:
    sid = world.studio.studio_id
    images = world.studio.admin.client().list_streaming_images(studioId=sid)["streamingImages"]
    assert {i["streamingImageId"] for i in images} == {
        world.studio.image_id,
        world.studio.other_image_id,
    }
    assert {i["state"] for i in images} == {"READY"}
    assert {i["ec2ImageId"] for i in images} == {"ami-00abc", "ami-01abc"}
    foreign = world.foreign.admin.client()
    with pytest.raises(foreign.exceptions.AccessDeniedException):
        foreign.list_streaming_images(studioId=sid)


def test_list_studio_components(world: World) -> None:
    sid = world.studio.studio_id
    for user in (world.studio.admin, world.operator):
        components = user.client().list_studio_components(studioId=sid, maxResults=5)[
            "studioComponents"
        ]
        assert [c["studioComponentId"] for c in components] == [world.studio.component_id]
        assert components[0]["type"] == "SHARED_FILE_SYSTEM"
        assert components[0]["name"] == "storage"
    outsider = world.outsider.client()
    with pytest.raises(outsider.exceptions.AccessDeniedException):
        outsider.list_studio_components(studioId=sid)
