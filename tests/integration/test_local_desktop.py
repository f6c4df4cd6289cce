"""What runs on a local desktop and as whom: the owner's account, the recipe, the initialization
scripts, VNC authentication, the clipboard, resizing, capacity, and what stopping ends and keeps.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import pathlib
import socket
import stat
import struct
import time
from collections.abc import Callable

import pytest

from opennimble import config
from opennimble.providers import base, local, local_process
from tests.integration import provider_support as support
from tests.integration.provider_support import as_owner, make_spec, started
from tests.integration.test_local_provider import rfb_greeting
from tests.support import desktops
from tests.support.desktops import vnc_connect

pytestmark = [
    pytest.mark.xvnc,
    pytest.mark.skipif(os.geteuid() != 0, reason="per-owner accounts need root"),
]

data_dir = pytest.fixture(support.reachable_data_dir)
runtime_dir = pytest.fixture(support.runtime_dir_in)
provider = pytest.fixture(support.provider_in)


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def windows(state: base.ProviderState) -> str:
    return as_owner(state, "xwininfo", "-root", "-tree").stdout


def comm(pid: int) -> str | None:
    """A process's program name, or None once it has exited (short-lived ones do)."""
    try:
        return pathlib.Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def programs(state: base.ProviderState) -> dict[str, int]:
    """The desktop's processes by program name -> their user id."""
    found = {}
    for pid in desktops.session_pids(state["session_id"]):
        name = comm(pid)
        uid = local_process.uid_of(pid)
        if name is not None and uid is not None:
            found[name] = uid
    return found


def pid_of(state: base.ProviderState, program: str) -> int:
    return next(pid for pid in desktops.session_pids(state["session_id"]) if comm(pid) == program)


def script(
    run_context: str, text: str, component: str = "tools", *, privileged: bool = False
) -> base.InitScript:
    return base.InitScript(component, run_context, text, (("GREETING", "hello"),), privileged)


def test_each_owner_runs_a_real_desktop_as_an_account_of_their_own(
    provider: local.LocalProvider, data_dir: pathlib.Path
) -> None:
    alice, bob = make_spec(), make_spec(owner_name="bob")

    async def scenario() -> list[base.ProviderState]:
        return list(await asyncio.gather(started(provider, alice), started(provider, bob)))

    a, b = asyncio.run(scenario())
    assert wait_for(lambda: "xterm" in windows(a) and "xterm" in windows(b))
    assert a["uid"] != b["uid"] and 0 not in (a["uid"], b["uid"])
    assert a["user"].startswith("on-alice-") and b["user"].startswith("on-bob-")
    assert programs(a).keys() >= {"Xvnc", "openbox", "xterm"}
    assert set(programs(a).values()) == {a["uid"]}
    for state in (a, b):
        home = pathlib.Path(state["home"])
        assert home.parent == data_dir / "homes"
        info = home.stat()
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (state["uid"], 0o700)
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o711

    # bob, in his own desktop, can do nothing to alice's
    (pathlib.Path(a["home"]) / "secret.txt").write_text("alice's")
    xterm = pid_of(a, "xterm")
    denied = [
        ["cat", f"{a['home']}/secret.txt"],
        ["ls", a["home"]],
        ["cat", f"/proc/{xterm}/environ"],
        ["kill", "-TERM", str(xterm)],
        ["cat", str(pathlib.Path(a["runtime_dir"]) / "Xauthority")],
    ]
    for argv in denied:
        done = as_owner(b, *argv)
        assert done.returncode != 0, argv
        assert "denied" in done.stderr or "not permitted" in done.stderr, done.stderr
    stolen = as_owner(b, "xwininfo", "-root", DISPLAY=f":{a['display']}")
    assert stolen.returncode != 0  # bob has no cookie for alice's display
    assert local_process.start_time_of(xterm) is not None

    asyncio.run(provider.delete(a))
    asyncio.run(provider.delete(b))


def test_vnc_needs_the_password_and_the_client_may_resize_the_desktop(
    provider: local.LocalProvider,
) -> None:
    state = asyncio.run(started(provider, make_spec()))
    port, password = state["port"], asyncio.run(provider.poll(state)).endpoint["password"]
    assert vnc_connect(port, None)[0] == [2]  # VNC authentication only, never "None"
    assert vnc_connect(port, "wrong!!!")[1] is None
    _, sock = vnc_connect(port, password)
    assert sock is not None
    with sock:
        assert wait_for(lambda: "openbox" in programs(state))
        # SetEncodings(ExtendedDesktopSize), then SetDesktopSize 1600x900 with one screen
        sock.sendall(struct.pack(">BxHi", 2, 1, -308))
        screen = struct.pack(">IHHHHI", 0, 0, 0, 1600, 900, 0)
        sock.sendall(struct.pack(">BxHHBx", 251, 1600, 900, 1) + screen)
        assert wait_for(lambda: "1600x900+0+0" in as_owner(state, "xwininfo", "-root").stdout)
    assert "openbox" in programs(state)  # the window manager follows the new size
    asyncio.run(provider.delete(state))


@pytest.mark.parametrize("clipboard", [False, True])
def test_clipboard_mode(provider: local.LocalProvider, clipboard: bool) -> None:
    state = asyncio.run(started(provider, make_spec(clipboard=clipboard)))
    expected = "1" if clipboard else "0"
    for parameter in ("AcceptCutText", "SendCutText", "SetPrimary", "SendPrimary"):
        assert as_owner(state, "vncconfig", "-get", parameter).stdout.strip() == expected
    as_owner(state, "vncconfig", "-set", "AcceptCutText=1")  # not from inside the desktop
    assert as_owner(state, "vncconfig", "-get", "AcceptCutText").stdout.strip() == expected
    asyncio.run(provider.delete(state))


def test_initialization_scripts_run_as_root_only_if_privileged_and_as_the_owner_inside(
    provider: local.LocalProvider,
) -> None:
    scripts = (
        script(
            "USER_INITIALIZATION",
            'echo "user $(id -u) $DISPLAY $GREETING" >> "$HOME/init.txt"\n'
            'xwininfo -root >/dev/null && echo "display ok" >> "$HOME/init.txt"\n',
        ),
        script(
            "SYSTEM_INITIALIZATION",
            'log="$OPENNIMBLE_OWNER_HOME/init.txt"\n'
            'echo "system $(id -u) ${DISPLAY:-none} $GREETING" > "$log"\n'
            'chown "$OPENNIMBLE_OWNER:" "$log"\n',
            privileged=True,
        ),
        script(
            "SYSTEM_INITIALIZATION",  # not an operator's: as the owner, in the home
            'echo "unprivileged system $(id -u) $(pwd) $USER" >> "$OPENNIMBLE_OWNER_HOME/init.txt"',
        ),
        base.InitScript("python", "USER_INITIALIZATION", "#!/usr/bin/python3\nprint('x')\n"),
    )
    state = asyncio.run(started(provider, make_spec(init_scripts=scripts)))
    lines = (pathlib.Path(state["home"]) / "init.txt").read_text().splitlines()
    display = f":{state['display']}"
    assert lines == [
        "system 0 none hello",
        f"unprivileged system {state['uid']} {state['home']} {state['user']}",
        f"user {state['uid']} {display} hello",
        "display ok",
    ]
    asyncio.run(provider.delete(state))


@pytest.mark.parametrize("run_context", ["SYSTEM_INITIALIZATION", "USER_INITIALIZATION"])
def test_a_failing_initialization_script_fails_the_start(
    provider: local.LocalProvider, runtime_dir: pathlib.Path, run_context: str
) -> None:
    failing = script(run_context, "echo mounting the share\necho 'no such share' >&2\nexit 3\n")
    spec = make_spec(init_scripts=(failing,))
    with pytest.raises(base.PermanentFailure) as failure:
        asyncio.run(provider.start(spec, {}))
    assert failure.value.status_code == "INITIALIZATION_SCRIPT_ERROR"
    assert failure.value.message == (
        f"Initialization script of studio component 'tools' ({run_context}) failed with exit "
        "status 3: mounting the share / no such share"
    )
    assert not support.desktop_processes(runtime_dir)
    asyncio.run(provider.delete({"session_id": spec.session_id}))


def test_an_initialization_script_that_hangs_is_ended(runtime_dir: pathlib.Path) -> None:
    provider = local.LocalProvider(runtime_dir=runtime_dir, ready_timeout=1.0)
    spec = make_spec(init_scripts=(script("USER_INITIALIZATION", "sleep 120\n"),))
    with pytest.raises(base.PermanentFailure, match=r"\(USER_INITIALIZATION\) did not finish"):
        asyncio.run(provider.start(spec, {}))
    assert not support.desktop_processes(runtime_dir)
    asyncio.run(provider.delete({"session_id": spec.session_id}))


def test_capacity_is_max_desktops(runtime_dir: pathlib.Path) -> None:
    provider = local.LocalProvider(runtime_dir=runtime_dir, max_desktops=1)
    first, second = make_spec(), make_spec()

    async def scenario() -> None:
        state = await started(provider, first)
        with pytest.raises(base.PermanentFailure) as failure:
            await provider.start(second, {})
        assert failure.value.status_code == "INSUFFICIENT_CAPACITY"
        assert "maximum of 1 desktops" in failure.value.message
        kept = await provider.stop(state)
        await provider.delete(await started(provider, second))
        await provider.delete(kept)

    asyncio.run(scenario())


def test_stop_ends_every_process_and_keeps_the_storage_unless_told(
    provider: local.LocalProvider,
) -> None:
    background = script(
        "USER_INITIALIZATION",
        "setsid sleep 300 >/dev/null 2>&1 &\n"  # keeps the session's marker
        "env -i setsid sleep 301 >/dev/null 2>&1 &\n",  # sheds it
    )
    spec = make_spec(init_scripts=(background,))

    async def scenario() -> None:
        state = await started(provider, spec)
        home = pathlib.Path(state["home"])
        storage = home / "sessions" / spec.session_id
        assert stat.S_IMODE(storage.stat().st_mode) == 0o700
        as_owner(state, "sh", "-c", f"echo mine > {home}/notes.txt; echo scratch > {storage}/x")
        sleepers = local_process.user_pids(state["uid"])
        assert len(sleepers) >= 5  # Xvnc, the session, openbox, xterm and its shell, sleeps
        await provider.stop(state)
        assert not local_process.user_pids(state["uid"])
        again = await started(provider, spec)
        assert (home / "notes.txt").read_text() == "mine\n"
        assert (storage / "x").read_text() == "scratch\n"
        await provider.stop(again, discard_storage=True)
        assert not storage.exists() and (home / "notes.txt").exists()
        await provider.delete(await started(provider, spec))
        assert not storage.exists() and (home / "notes.txt").exists()

    asyncio.run(scenario())


def test_a_session_stopped_under_an_earlier_account_moves_its_storage_to_the_new_one(
    provider: local.LocalProvider, data_dir: pathlib.Path
) -> None:
    """Accounts of earlier versions were per user, not per (studio, user): a session stopped
    under such an account starts as the new one and takes its storage along; the rest of the
    old home stays where it was."""
    spec = make_spec()
    earlier = dataclasses.replace(spec, studio_id="stid-earlier")  # another account of the user

    async def scenario() -> None:
        state = await started(provider, earlier)
        old_home = pathlib.Path(state["home"])
        old_storage = old_home / "sessions" / spec.session_id
        writes = f"echo mine > {old_home}/notes.txt; echo work > {old_storage}/x"
        as_owner(state, "sh", "-c", writes)
        again = await provider.start(spec, await provider.stop(state))
        await support.wait_ready(provider, again)
        storage = pathlib.Path(again["home"]) / "sessions" / spec.session_id
        assert again["user"] != state["user"]
        assert (storage / "x").read_text() == "work\n"
        assert (storage / "x").stat().st_uid == again["uid"]
        assert not old_storage.exists() and (old_home / "notes.txt").exists()
        assert not list((data_dir / "backups").rglob("*.tar"))  # the archive it moved through
        await provider.delete(again)

    asyncio.run(scenario())


def test_storage_moves_between_two_home_images(runtime_dir: pathlib.Path) -> None:
    """With home images (home_size), moving a session's storage from an account of an earlier
    version mounts both homes around the move: the storage arrives in the new account's image,
    leaves the old one's, and the rest of the old home stays in its image."""
    provider = local.LocalProvider(runtime_dir=runtime_dir, ready_timeout=10.0, home_size=2**26)
    spec = make_spec()
    earlier = dataclasses.replace(spec, studio_id="stid-earlier")  # another account of the user

    async def scenario() -> None:
        state = await started(provider, earlier)
        old_home = pathlib.Path(state["home"])
        writes = (
            f"echo mine > {old_home}/notes.txt; echo work > {old_home}/sessions/{spec.session_id}/x"
        )
        as_owner(state, "sh", "-c", writes)
        again = await provider.start(spec, await provider.stop(state))
        await support.wait_ready(provider, again)
        assert not os.path.ismount(old_home) and os.path.ismount(again["home"])
        storage = pathlib.Path(again["home"]) / "sessions" / spec.session_id
        assert (storage / "x").read_text() == "work\n"
        await provider.delete(again)
        assert not os.path.ismount(again["home"])
        other = await started(provider, dataclasses.replace(earlier, session_id="st-other"))
        assert os.path.ismount(old_home)  # the old account's image, mounted again
        assert (old_home / "notes.txt").read_text() == "mine\n"
        assert not (old_home / "sessions" / spec.session_id).exists()
        await provider.delete(other)
        assert not os.path.ismount(old_home)

    asyncio.run(scenario())


def test_stopping_one_desktop_leaves_the_owners_other_desktop_alone(
    provider: local.LocalProvider,
) -> None:
    first = make_spec()
    second = make_spec(owned_by=first.owned_by)

    async def scenario() -> None:
        one, two = await started(provider, first), await started(provider, second)
        assert one["uid"] == two["uid"]
        await provider.delete(one)
        assert support.alive(two) and "xterm" in programs(two)
        await provider.delete(two)

    asyncio.run(scenario())


def test_an_owners_first_desktops_starting_at_once_share_one_new_account(
    provider: local.LocalProvider,
) -> None:
    first = make_spec()
    specs = [first] + [make_spec(owned_by=first.owned_by) for _ in range(3)]

    async def scenario() -> None:
        states = await asyncio.gather(*(started(provider, spec) for spec in specs))
        assert len({state["uid"] for state in states}) == 1
        home = pathlib.Path(states[0]["home"])
        assert os.stat(home).st_uid == states[0]["uid"]
        for state in states:
            await provider.delete(state)

    asyncio.run(scenario())


def test_backups_are_the_servers_and_hold_what_the_owner_could_read(
    provider: local.LocalProvider, data_dir: pathlib.Path
) -> None:
    spec = make_spec()

    async def scenario() -> None:
        state = await started(provider, spec)
        storage = pathlib.Path(state["home"]) / "sessions" / spec.session_id
        link = f"ln -s /etc/shadow {storage}/shadow && echo mine > {storage}/mine.txt"
        assert as_owner(state, "sh", "-c", link).returncode == 0
        kept = await provider.stop(state)
        backup = await provider.back_up(kept, "b-1")
        archive = pathlib.Path(backup["path"])
        assert archive.parent.parent == data_dir / "backups"
        assert stat.S_IMODE(os.stat(data_dir / "backups").st_mode) == 0o700
        assert os.stat(archive).st_uid == os.geteuid()
        assert await provider.back_up(kept, "b-1") == backup  # taken once

        assert as_owner(state, "rm", "-rf", str(storage)).returncode == 0
        await provider.restore(spec, kept, backup)
        assert (storage / "mine.txt").read_text() == "mine\n"
        assert (storage / "shadow").is_symlink()  # the link, never the file it names
        assert os.stat(storage / "mine.txt").st_uid == state["uid"]

        for elsewhere in ("/etc/shadow", f"{archive.parent}/../../outside.tar"):
            with pytest.raises(base.PermanentFailure, match="not a backup"):
                await provider.restore(spec, kept, {**backup, "path": elsewhere})
        await provider.delete_backup(backup)
        assert not archive.exists()
        await provider.delete(kept)

    asyncio.run(scenario())


def test_recipes_choose_what_runs(runtime_dir: pathlib.Path) -> None:
    recipes = {
        "ami-0render": config.DesktopRecipe(
            applications=["xterm -title render-farm"], environment={"STUDIO_TOOL": "blender"}
        ),
        "ami-0broken": config.DesktopRecipe(applications=["no-such-dcc --gui"]),
    }
    provider = local.LocalProvider(runtime_dir=runtime_dir, recipes=recipes)
    state = asyncio.run(started(provider, make_spec(ec2_image_id="ami-0render")))
    assert wait_for(lambda: "render-farm" in windows(state))
    xterm = next(pid for pid in desktops.session_pids(state["session_id"]) if comm(pid) == "xterm")
    assert b"STUDIO_TOOL=blender" in pathlib.Path(f"/proc/{xterm}/environ").read_bytes()
    asyncio.run(provider.delete(state))
    with pytest.raises(base.PermanentFailure) as failure:
        asyncio.run(provider.start(make_spec(ec2_image_id="ami-0broken"), {}))
    assert failure.value.status_code == "AMI_VALIDATION_ERROR"
    assert failure.value.message == (
        "the desktop recipe of ami-0broken needs no-such-dcc, not installed on this host"
    )


def test_a_session_that_ends_before_the_desktop_is_usable_fails_at_once(
    runtime_dir: pathlib.Path,
) -> None:
    """The session script ends before the desktop is usable (here its window manager's line
    ends it; a confinement that fails would too): nothing would start the window manager or the
    applications any more, so the desktop fails then, instead of after the ready timeout."""
    # (in the function that runs the window manager, $$ is the session script's shell)
    ends_the_session = "echo the session ends here; kill -TERM $$; exec sleep 30"
    recipes = {"ami-0ends": config.DesktopRecipe(window_manager=ends_the_session)}
    provider = local.LocalProvider(runtime_dir=runtime_dir, recipes=recipes, ready_timeout=60)
    began = time.monotonic()

    async def scenario() -> base.PermanentFailure:
        state = await provider.start(make_spec(ec2_image_id="ami-0ends"), {})
        try:
            while time.monotonic() - began < 30:
                try:
                    result = await provider.poll(state)
                except base.PermanentFailure as failure:
                    return failure
                assert result.health is base.Health.STARTING, result
                await asyncio.sleep(0.2)
            raise AssertionError("the desktop did not fail")
        finally:
            await provider.delete(state)

    failure = asyncio.run(scenario())
    assert failure.message.startswith(
        "The desktop session ended before the desktop was usable "
        "(the window manager is not running yet): "
    ), failure.message
    assert "the session ends here" in failure.message
    assert time.monotonic() - began < 30  # not the 60 s of ready_timeout


def test_a_data_directory_closed_to_other_users_is_refused(data_dir: pathlib.Path) -> None:
    closed = data_dir.parent / "private"
    closed.mkdir(mode=0o700)
    provider = local.LocalProvider(runtime_dir=closed / "data" / "desktops")
    with pytest.raises(base.PermanentFailure) as failure:
        asyncio.run(provider.start(make_spec(), {}))
    assert failure.value.message == (
        f"desktop accounts cannot reach {closed}/data/desktops: {closed} does not let other "
        f"users search it (mode 0700); allow it with chmod o+x {closed} or set desktops_dir "
        "(and homes_dir) in [providers.local] to a directory other users can reach"
    )


def test_without_per_owner_accounts_desktops_run_as_the_servers_user(
    runtime_dir: pathlib.Path, data_dir: pathlib.Path
) -> None:
    """What a server that does not run as root does (here: told not to isolate)."""
    provider = local.LocalProvider(runtime_dir=runtime_dir, isolate=False)
    state = asyncio.run(started(provider, make_spec()))
    assert state["uid"] == os.getuid()
    assert pathlib.Path(state["home"]).parent == data_dir / "homes"
    assert wait_for(lambda: {"Xvnc", "openbox", "xterm"} <= programs(state).keys())
    assert set(programs(state).values()) == {os.getuid()}
    asyncio.run(provider.delete(state))


def connects(state: base.ProviderState, port: int) -> bool:
    """Whether the desktop's account gets a TCP connection to ``port`` on loopback."""
    probe = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=5)"
    return as_owner(state, "python3", "-c", probe).returncode == 0


def test_desktop_accounts_reach_neither_the_database_nor_any_desktops_vnc_port(
    data_dir: pathlib.Path,
) -> None:
    """The network filter (nftables, by uid): a desktop account's connections to the
    database's port and to the desktops' VNC ports are refused; the server's are not, and other
    ports stay open to the desktops."""
    with (
        socket.create_server(("127.0.0.1", 0)) as database,
        socket.create_server(("127.0.0.1", 0)) as other_service,
    ):
        database_port, other_port = database.getsockname()[1], other_service.getsockname()[1]
        provider = local.LocalProvider(
            runtime_dir=data_dir / "desktops", ready_timeout=10.0, closed_ports={database_port}
        )

        async def scenario() -> tuple[base.ProviderState, base.ProviderState]:
            return (await started(provider, make_spec()), await started(provider, make_spec()))

        mine, theirs = asyncio.run(scenario())
        try:
            assert not connects(mine, database_port)
            assert not connects(mine, theirs["port"])
            assert not connects(mine, mine["port"])
            assert connects(mine, other_port)
            assert rfb_greeting(theirs["port"]).startswith(b"RFB ")  # the server may
        finally:
            for state in (mine, theirs):
                asyncio.run(provider.delete(state))
    ended = theirs["port"]
    with socket.create_server(("127.0.0.1", ended)) as reused:  # a deleted desktop's port opens
        assert reused.getsockname()[1] == ended
        fresh = asyncio.run(started(provider, make_spec()))
        try:
            assert connects(fresh, ended)
        finally:
            asyncio.run(provider.delete(fresh))
