"""The ``local`` provider: each session's desktop is a TigerVNC ``Xvnc`` on this machine.

A desktop is one X display with one VNC (RFB) port, and a *session* in it (the window manager
and applications of the image's desktop recipe), all running as the owner's own Unix account
(:mod:`local_accounts`). Starting one:

1. find or create the owner's account and home in the session's studio;
2. run the ``SYSTEM_INITIALIZATION`` scripts: those an operator wrote as the provider's own
   user (root), all others as the owner's account (:mod:`opennimble.domain.components`);
3. start Xvnc (VNC password, own ``Xauthority``, clipboard as the launch profile says), unless
   the host already runs ``max_desktops`` desktops, or ``max_desktops_per_owner`` of the
   owner's (``INSUFFICIENT_CAPACITY``);
4. create the session's storage, ``~/sessions/<session id>`` in the owner's home;
5. run the ``USER_INITIALIZATION`` scripts as the owner, with the display;
6. start the session script (steps 4 to 6: :mod:`local_session`, :mod:`local_recipes`).

Every process of a desktop runs in its control group (:mod:`local_cgroups`) and its
confinement (:mod:`local_confine`): an X socket directory of its own, a size-limited /tmp,
/var/tmp, /dev/shm and /run/lock of its own and a file size limit; the owner's home is a file
system of ``home_size`` (:mod:`local_home_images`), mounted while a desktop of the owner runs
or the provider works in it. Everything runs detached in
sessions of its own, so desktops outlive the server process that started them; what is
needed to find one again is in the provider state and in the desktop's
record (:mod:`local_host`). A desktop interrupted before step 6 completed is ended and started
afresh. Stopping ends every process of the desktop (:mod:`local_process`) and keeps the home
and the session's storage; ``discard_storage`` and deletion remove the storage, never the
home. Xvnc gets the lowest free display number (:mod:`local_xnames`) and reports it
(``-displayfd``) once it accepts connections; if another process takes its display or its RFB
port first, it exits at once and the start is retried with another.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import pathlib
import re
import secrets
import shutil
import socket
from collections.abc import Mapping
from typing import Any

from opennimble import config
from opennimble.domain import instance_types
from opennimble.providers import (
    base,
    desktop_job,
    local_accounts,
    local_backups,
    local_cgroups,
    local_confine,
    local_display,
    local_home_images,
    local_host,
    local_network,
    local_process,
    local_recipes,
    local_scripts,
    local_session,
    local_settings,
    local_xnames,
    local_xvnc,
)
from opennimble.providers.local_accounts import Account

log = logging.getLogger("opennimble.providers.local")

HOST = "127.0.0.1"
PASSWORD_FILE = "passwd"
MAX_FILE_SIZE = 16 * 1024**3  # bytes, the default of max_file_size
LAUNCH_ATTEMPTS = 5  # Xvnc starts that find their port or display taken, before giving up
STOP_GRACE = 5.0
USABLE_WAIT = 1.0  # seconds a poll waits for a starting desktop to become usable
_SESSION_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")
# what the provider state (stored in the database) keeps of a desktop's record: not its VNC
# password, which stays in the record (root's, mode 0600) on this host
_STATE_KEYS = (
    "pid", "display", "port", "host", "start_time", "runtime_dir", "session_id",
    "user", "uid", "gid", "home",
)  # fmt: skip


class _PortTaken(Exception):
    """Xvnc could not bind the RFB port chosen for it (or another start may succeed)."""


class _DisplayTaken(Exception):
    """Xvnc could not take the X display chosen for it: someone took its name meanwhile."""


class LocalProvider(base.Provider):
    """Desktops as TigerVNC Xvnc servers on this machine."""

    name = "local"

    def __init__(
        self,
        *,
        runtime_dir: pathlib.Path,
        homes_dir: pathlib.Path | None = None,
        backups_dir: pathlib.Path | None = None,
        xvnc: str = "Xvnc",
        geometry: str = "1280x800",
        ready_timeout: float = 30.0,
        stop_grace: float = STOP_GRACE,
        max_desktops: int = 16,
        max_desktops_per_owner: int = 4,
        recipes: Mapping[str, config.DesktopRecipe] | None = None,
        isolate: bool | None = None,
        interface: str = HOST,
        advertise_host: str | None = None,
        closed_ports: set[int] | None = None,
        filter_table: str | None = None,
        resource_scale: float = 1.0,
        max_processes: int = 1024,
        max_file_size: int | None = MAX_FILE_SIZE,
        scratch: local_confine.ScratchLimits | None = None,
        home_size: int = 0,
        groups: local_cgroups.Hierarchy | None = None,
    ) -> None:
        self._runtime_dir = pathlib.Path(runtime_dir).absolute()
        self._groups = groups or local_cgroups.hierarchy(self._runtime_dir.parent)
        problem = self._groups.usable()
        if problem is not None:  # refused at start, not at the first session
            raise base.PermanentFailure(
                f"the local provider runs each desktop in a control group of its own, but "
                f"{problem}: run the server as root on a machine with cgroups mounted "
                f"(cgroup v2 at {local_cgroups.ROOT}, or the v1 controllers "
                f"{', '.join(local_cgroups.V1_CONTROLLERS)})"
            )
        self._resource_scale = resource_scale
        self._max_processes = max_processes
        self._max_file_size = max_file_size
        self._homes_dir = pathlib.Path(homes_dir or self._runtime_dir.parent / "homes").absolute()
        self._xvnc = xvnc
        self._geometry = geometry
        self._ready_timeout = self.ready_timeout = ready_timeout
        self.capacity = max_desktops
        ending = local_process.Ending(grace=stop_grace)
        self._host = local_host.Host(
            self._runtime_dir,
            max_desktops=max_desktops,
            max_per_owner=max_desktops_per_owner,
            ending=ending,
            groups=self._groups,
        )
        self._recipes = dict(recipes or {})
        isolate = local_accounts.can_isolate() if isolate is None else isolate
        if isolate:
            local_confine.check_tools()  # refused at start, not at the first session
        if isolate and scratch is not None:
            local_confine.check_scratch_targets(self._runtime_dir, self._homes_dir)
        self._scratch = scratch if isolate else None
        self._accounts = local_accounts.Accounts(self._homes_dir, isolate=isolate)
        self._home_images = None  # home_size bytes per home: an image mounted on it (as root)
        if isolate and home_size:
            images = self._runtime_dir.parent / local_home_images.IMAGES_DIR
            self._home_images = local_home_images.HomeImages(images, home_size, self._host)
            self._home_images.check()  # refused at start, not at the first session
            self._home_images.check_not_shared(self._homes_dir)
        self._backups = local_backups.Backups(
            pathlib.Path(backups_dir or self._runtime_dir.parent / "backups")
        )
        self._interface = interface
        self._probe_host = HOST if interface in ("0.0.0.0", "::", "") else interface
        self._advertise_host = advertise_host or self._probe_host
        self._reserved_ports: set[int] = set()
        self._reserved_displays: set[int] = set()
        self._opened = False
        # desktop accounts may not connect to these (the database's) nor to any desktop's port
        self._closed_ports = set(closed_ports or ())
        table = filter_table or local_network.table_name(self._runtime_dir.parent)
        self._firewall = local_network.Firewall(table) if isolate else None
        self._filtered = False
        self._filtered_uids: set[int] = set()  # accounts this process put in the filter
        if isolate:
            local_network.warn_if_unavailable()
        if not isolate:
            log.warning(
                "the local provider does not run as root: every desktop runs as this server's "
                "user, and nothing keeps artists from each other's files and processes"
            )

    @classmethod
    def from_settings(cls, settings: config.Settings) -> LocalProvider:
        provider = cls._from_settings(settings)
        provider._prepare_directories()  # refused at start, not at the first session
        return provider

    @classmethod
    def _from_settings(cls, settings: config.Settings) -> LocalProvider:
        own = local_settings.table(
            settings, cls.name, local_settings.LocalSettings, local_settings.LOCAL_KEYS
        )
        return cls(
            runtime_dir=own.runtime_dir(settings),
            **own.launcher_options(settings),
            max_desktops=own.max_desktops,
            max_desktops_per_owner=own.max_desktops_per_owner,
            advertise_host=own.resolved_advertise_host(),
            closed_ports=local_network.database_ports(settings.resolved_database_url),
            filter_table=local_network.table_name(settings.data_dir),
            resource_scale=own.resource_scale,
            max_processes=own.max_processes,
            scratch=own.scratch_limits(),
            home_size=own.home_size * 1024 * 1024,
        )

    # ---- the contract -----------------------------------------------------------------------

    async def start(self, spec: base.DesktopSpec, state: base.ProviderState) -> base.ProviderState:
        sid = _session_id(spec.session_id)
        # one start, stop or deletion of a desktop at a time on this host: a second start
        # waits, then finds the first's desktop and adopts it (or ends what is left of it)
        async with self._host.session_lock(sid):
            return await self._start(spec, state, sid)

    async def _start(
        self, spec: base.DesktopSpec, state: base.ProviderState, sid: str
    ) -> base.ProviderState:
        record = self._host.read(sid)
        if self._attachable(record, sid):
            return _public(record)
        if record or state.get("pid") or self._host.groups.group(sid).exists():
            await self._host.end(state, sid)  # what is left of an earlier attempt goes
        exe = shutil.which(self._xvnc)
        if exe is None:
            raise base.PermanentFailure(
                f"Xvnc ({self._xvnc}) is not installed: {local_xvnc.INSTALL_HINT}"
            )
        chosen = local_recipes.choose(self._recipes, spec.ec2_image_id)
        # the programs are looked up on the PATH the session will have (a recipe may set it)
        path = {**local_session.base_environment(), **chosen.recipe.environment}["PATH"]
        local_recipes.check_installed(chosen, spec.clipboard, path)
        self._prepare_directories()
        self._host.check_capacity(sid, spec.owned_by)  # early: no scripts then
        account = await asyncio.to_thread(self._account, spec)
        await self._filter(account)
        previous = Account.from_state(state) or Account.from_state(record)
        await self._adopt_storage(previous, account, sid)
        self._host.session_dir(sid).mkdir(parents=True, exist_ok=True)
        self._host.session_dir(sid).chmod(0o711)  # whatever the server's umask (077)
        # the record names the account from now on: its home stays mounted while the
        # desktop's control group exists (local_home_images)
        self._host.write(sid, self._stopped_record(sid, account))
        if self._accounts.isolate:  # fresh X sockets for every run of the desktop
            owner = local_session.owner_of(account)
            directory = self._host.session_dir(sid)
            await asyncio.to_thread(local_confine.prepare_sockets, directory, owner)
            if self._scratch is not None:
                await asyncio.to_thread(local_confine.mount_scratch, directory, self._scratch)
        state = {}
        gate: local_session.Gate | None = None
        try:  # a start that fails leaves nothing running, nor its control group
            async with self._host.lock():  # the home is mounted before the group exists
                if self._home_images is not None:
                    await asyncio.to_thread(self._home_images.mount, account)
                await asyncio.to_thread(self._make_group, spec)
            confinements = (
                self._confinement(sid, account),
                self._confinement(sid, account, as_owner=False),
            )
            runners = local_session.system_runners(
                self._host, spec, account, self._ready_timeout, confinements
            )
            await local_scripts.run_all(spec.init_scripts, base.SYSTEM_INITIALIZATION, *runners)
            recipe = chosen.recipe
            state, gate = await self._start_desktop(exe, spec, account, recipe)
            await local_session.begin(
                self._host,
                spec,
                account,
                recipe,
                state["display"],
                self._ready_timeout,
                self._confinement(sid, account),
                gate,
            )
            state["launched"] = True
            state["wait_for_window"] = local_recipes.has_window(recipe, spec.clipboard)
            state["session_pid"], state["session_start_time"] = gate.pid, gate.start_time
            self._host.write(sid, state)
        except BaseException:
            await asyncio.shield(self._end(state, sid, account))
            raise
        finally:
            if gate is not None:
                gate.close()
        return _public(state)

    async def poll(self, state: base.ProviderState) -> base.PollResult:
        sid = state.get("session_id")
        if not isinstance(sid, str) or not _SESSION_ID.fullmatch(sid):
            return base.PollResult(base.Health.GONE, message="no session id in the state")
        if not state.get("pid"):  # a state lost before it was stored: the record still knows
            state = self._host.read(sid)
        pid = state.get("pid")
        if not pid:
            return base.PollResult(base.Health.GONE, message="no desktop process")
        if not local_process.desktop_alive(pid, state.get("start_time"), sid):
            return await self._gone(state, sid)
        port = state.get("port")
        if not isinstance(port, int) or not await local_xvnc.rfb_ready(self._probe_host, port):
            return base.PollResult(base.Health.STARTING, message="VNC port not answering yet")
        lacking = await self._usable(state, sid)
        if lacking is not None:
            self._check_session(state, sid, lacking)
            return base.PollResult(base.Health.STARTING, message=lacking)
        record = self._mark_ready(state, sid)
        password = record.get("password") if _same_desktop(record, state) else None
        endpoint = {"host": state.get("host"), "port": port, "password": password}
        return base.PollResult(base.Health.READY, endpoint=endpoint)

    async def stop(
        self, state: base.ProviderState, *, discard_storage: bool = False
    ) -> base.ProviderState:
        sid = state.get("session_id")
        if not isinstance(sid, str):
            return {}
        sid = _session_id(sid)
        async with self._host.session_lock(sid):
            return await self._stop(sid, state, discard_storage)

    async def _stop(
        self, sid: str, state: base.ProviderState, discard_storage: bool
    ) -> base.ProviderState:
        record = self._host.read(sid)
        account = Account.from_state(state) or Account.from_state(record)
        await self._host.end(state, sid)
        await self._open_port(record.get("port"))
        await asyncio.to_thread(local_confine.remove_sockets, self._host.session_dir(sid))
        await asyncio.to_thread(local_confine.unmount_scratch, self._host.session_dir(sid))
        if discard_storage and account is not None:
            async with self._home(account):  # still mounted if the desktop ran: released after
                await local_session.discard_storage(account, sid)
        elif account is not None and self._home_images is not None:
            await self._home_images.release(account)
        kept = {"session_id": sid, "runtime_dir": str(self._host.session_dir(sid))}
        kept.update(account.as_state() if account is not None else {})
        if self._host.session_dir(sid).is_dir():
            self._host.write(sid, {**kept, "pid": None})
        return kept

    def _stopped_record(self, sid: str, account: Account) -> dict[str, Any]:
        directory = str(self._host.session_dir(sid))
        return {"session_id": sid, "runtime_dir": directory, **account.as_state(), "pid": None}

    async def _end(self, state: base.ProviderState, sid: str, account: Account | None) -> None:
        """End every process of the desktop; then its owner's home is unmounted if no other
        desktop of the owner is on this host."""
        await self._host.end(state, sid)
        if self._home_images is not None and account is not None:
            await self._home_images.release(account)

    def _home(self, account: Account) -> contextlib.AbstractAsyncContextManager[None]:
        """The account's home mounted around the provider's work in it (if homes are images)."""
        if self._home_images is None:
            return contextlib.nullcontext()
        return self._home_images.using(account)

    async def delete(self, state: base.ProviderState) -> None:
        sid = state.get("session_id")
        if not isinstance(sid, str):
            return
        sid = _session_id(sid)
        async with self._host.session_lock(sid) as forget:
            await self._stop(sid, state, discard_storage=True)
            directory = self._host.session_dir(sid)
            await asyncio.to_thread(shutil.rmtree, directory, ignore_errors=True)
            forget()  # the desktop is gone for good: so is its lock file

    async def back_up(self, state: base.ProviderState, backup_id: str) -> base.ProviderState:
        sid = _session_id(str(state.get("session_id", "")))
        account = Account.from_state(state) or Account.from_state(self._host.read(sid))
        if account is None:
            raise base.PermanentFailure(f"no desktop account is known for session {sid}")
        async with self._home(account):
            return await self._backups.take(account, sid, _session_id(backup_id))

    async def restore(
        self, spec: base.DesktopSpec, state: base.ProviderState, backup: base.ProviderState
    ) -> None:
        sid = _session_id(spec.session_id)
        if backup.get("session_id") != sid:
            raise base.PermanentFailure(f"backup {backup.get('path')} is not of session {sid}")
        async with self._host.session_lock(sid):
            if self._attachable(self._host.read(sid), sid):
                return  # restored and started by an earlier attempt
            account = await asyncio.to_thread(self._account, spec)
            async with self._home(account):
                await self._backups.restore(account, sid, backup)

    async def delete_backup(self, backup: base.ProviderState) -> None:
        await self._backups.delete(backup)

    async def reap(self, known: set[str]) -> list[str]:
        reaped = []
        for sid, _ in self._host.records():
            if sid in known or not _SESSION_ID.fullmatch(sid):
                continue
            await self.delete({"session_id": sid})
            reaped.append(sid)
        return reaped

    # ---- starting ---------------------------------------------------------------------------

    def _account(self, spec: base.DesktopSpec) -> Account:
        return self._accounts.ensure(spec.studio_id, spec.owned_by, spec.owner_name)

    async def _filter(self, account: Account) -> None:
        """Keep ``account`` from the closed ports (:mod:`local_network`); the first time, build
        the filter with every desktop account and the ports of the host's running desktops."""
        if self._firewall is None:
            return
        if not self._filtered:
            uids = [e.pw_uid for e in local_accounts.desktop_accounts(self._homes_dir)]
            ports = [r["port"] for _, r in self._host.running(but="") if "port" in r]
            closed = {*self._closed_ports, *ports}
            await asyncio.to_thread(self._firewall.build, {*uids, account.uid}, closed)
            self._filtered = True
        elif account.uid not in self._filtered_uids:  # once per account (an nft run each)
            await asyncio.to_thread(self._firewall.add_account, account.uid)
        self._filtered_uids.add(account.uid)

    async def _close_port(self, port: int) -> None:
        if self._firewall is not None:
            await asyncio.to_thread(self._firewall.close_port, port)

    async def _open_port(self, port: object) -> None:
        if self._firewall is None or not isinstance(port, int) or port in self._closed_ports:
            return
        await asyncio.to_thread(self._firewall.open_port, port)

    async def _adopt_storage(self, previous: Account | None, account: Account, sid: str) -> None:
        """Move the session's storage into ``account``'s home if an earlier start ran the
        session as another account (one of the per-user accounts of earlier versions). Both
        sides are done as their own accounts, through an archive; the old storage is removed
        last, and a session whose old storage is gone is not moved again."""
        if previous is None or previous.name == account.name or not previous.isolated:
            return
        async with self._home(previous), self._home(account):
            if not await local_session.has_storage(previous, sid):
                return
            moving = await self._backups.take(previous, sid, f"moving-to-{account.name}")
            await self._backups.restore(account, sid, moving)
            await self._backups.delete(moving)
            await local_session.discard_storage(previous, sid)
        log.info("moved the storage of session %s from %s to %s", sid, previous.name, account.name)

    def _make_group(self, spec: base.DesktopSpec) -> None:
        """The desktop's control group, with the limits of its instance type."""
        group = self._host.groups.group(spec.session_id)
        group.create()
        group.limit(self.limits(spec.ec2_instance_type))

    def _confinement(
        self, sid: str, account: Account, *, as_owner: bool = True
    ) -> local_confine.Confinement:
        """How a process of the desktop of ``sid``, whose owner's account is ``account``, is
        confined: as that account (``as_owner`` False: as the provider's user), with the
        desktop's own X sockets when accounts are isolated."""
        directory = self._host.session_dir(sid)
        sockets, scratch, home = None, None, None
        if self._accounts.isolate:
            sockets = local_confine.sockets_dir(directory)
            scratch = local_confine.scratch_dir(directory) if self._scratch else None
        if self._home_images is not None:
            home = account.home
        user = (account.uid, account.gid) if as_owner and account.isolated else None
        return local_confine.Confinement(sockets, self._max_file_size, user, scratch, home)

    def limits(self, instance_type: str) -> local_cgroups.Limits:
        """A desktop's limits: its instance type's vCPUs and memory, scaled for this host."""
        try:
            resources = instance_types.resources(instance_type, self._resource_scale)
        except KeyError:
            raise base.PermanentFailure(f"unknown ec2InstanceType {instance_type!r}") from None
        return local_cgroups.Limits(
            cpus=float(resources.vcpus),
            memory=resources.memory_mib * 1024 * 1024,
            pids=self._max_processes,
        )

    def _attachable(self, record: dict[str, Any], sid: str) -> bool:
        """Whether ``record`` is a desktop of ``sid`` that came all the way up and still runs."""
        return (
            record.get("session_id") == sid
            and record.get("launched") is True
            and isinstance(record.get("display"), int)
            and isinstance(record.get("port"), int)
            and isinstance(record.get("password"), str)
            and local_process.desktop_alive(record.get("pid"), record.get("start_time"), sid)
        )

    def _prepare_directories(self) -> None:
        """Make the runtime and home directories; with per-owner accounts, make sure those
        accounts can reach them (PermanentFailure saying how to fix it if not)."""
        if not self._accounts.isolate:
            for directory in (self._runtime_dir, self._homes_dir):
                directory.mkdir(parents=True, exist_ok=True)
            return
        if not self._opened:
            own = {self._runtime_dir, self._homes_dir}
            closed = local_accounts.open_for_desktops(self._runtime_dir.parent, own)
            if closed:
                where = self._runtime_dir.parent
                log.warning("closed %s of %s to other users", ", ".join(closed), where)
            local_confine.ensure_mount_point()
            self._opened = True
        for directory in (self._runtime_dir, self._homes_dir):
            problem = local_accounts.reachability_problem(directory)
            if problem is not None:
                raise base.PermanentFailure(problem)

    async def _start_desktop(
        self, exe: str, spec: base.DesktopSpec, account: Account, recipe: config.DesktopRecipe
    ) -> tuple[dict[str, Any], local_session.Gate]:
        """Start Xvnc and, meanwhile, the session script, which waits for the display
        (:func:`local_session.launch`); returns Xvnc's state and the session's gate."""
        confinement = self._confinement(spec.session_id, account)
        xvnc = asyncio.ensure_future(self._start_xvnc(exe, spec, account))
        session = asyncio.ensure_future(
            local_session.launch(self._host, spec, account, recipe, confinement)
        )
        try:
            await asyncio.wait((xvnc, session), return_when=asyncio.FIRST_EXCEPTION)
            return xvnc.result(), session.result()
        except BaseException:
            # the session's start is short and not cancelled (a process it is starting in a
            # thread would get a closed gate); the caller ends what did start
            xvnc.cancel()
            await asyncio.gather(xvnc, session, return_exceptions=True)
            if not session.cancelled() and session.exception() is None:
                session.result().close()
            raise

    async def _start_xvnc(
        self, exe: str, spec: base.DesktopSpec, account: Account
    ) -> dict[str, Any]:
        password = local_xvnc.new_password()
        port = self._reserve_port()
        tried: set[int] = set()  # display numbers that were taken when Xvnc came to bind them
        try:
            _, obfuscated = await asyncio.gather(  # side by side: each waits for a program
                self._close_port(port),  # other desktops' accounts never reach it
                asyncio.to_thread(local_xvnc.password_file_content, password),
            )
            for _ in range(LAUNCH_ATTEMPTS):
                display = await self._reserve_display(tried)
                try:
                    return await self._launch(
                        exe, spec, account, port, display, password, obfuscated
                    )
                except _PortTaken:
                    await self._open_port(port)
                    self._reserved_ports.discard(port)
                    port = self._reserve_port()
                    await self._close_port(port)
                except _DisplayTaken:
                    tried.add(display)  # taken since it was chosen: a squatter at work?
                    await local_xnames.evict_squatters(self._host.ending)
                finally:
                    self._reserved_displays.discard(display)
        finally:
            self._reserved_ports.discard(port)
        raise base.TemporaryFailure(
            f"Xvnc found its VNC port or X display taken at each of {LAUNCH_ATTEMPTS} attempts"
        )

    async def _reserve_display(self, tried: set[int]) -> int:
        """A display number for an Xvnc about to start: free on the host (:mod:`local_xnames`),
        not in ``tried`` and not another start's of this process."""
        while True:
            avoid = tried | self._reserved_displays
            display = await local_xnames.choose(self._host.ending, avoid)
            if display is None:
                raise base.TemporaryFailure(
                    "no X display name is free on this host, and no squatter holds several"
                )
            if display not in self._reserved_displays:  # taken by another start meanwhile
                self._reserved_displays.add(display)
                return display

    def _reserve_port(self) -> int:
        port = _free_port(self._probe_host)
        while port in self._reserved_ports:  # another start of this process holds it
            port = _free_port(self._probe_host)
        self._reserved_ports.add(port)
        return port

    async def _launch(
        self,
        exe: str,
        spec: base.DesktopSpec,
        account: Account,
        port: int,
        display: int,
        password: str,
        obfuscated: bytes,
    ) -> dict[str, Any]:
        """Start one Xvnc on ``display`` and ``port`` asking for ``password`` (``obfuscated``:
        its password file's content) and return its state once it accepts connections."""
        sid, directory = spec.session_id, self._host.session_dir(spec.session_id)
        state: dict[str, Any] = {"display": None, "port": port, "host": self._advertise_host}
        state.update(password=password, runtime_dir=str(directory), session_id=sid)
        state.update(account.as_state(), launched=False, owned_by=spec.owned_by)
        owner = local_session.owner_of(account)
        xauthority, password_file = (
            directory / local_session.XAUTHORITY_FILE,
            directory / PASSWORD_FILE,
        )
        cookie = secrets.token_bytes(16)
        local_xvnc.write_private(xauthority, local_xvnc.xauthority_entry(cookie), owner)
        # the provider's own, to ask the display whether it is usable (local_display)
        local_xvnc.write_private(
            directory / local_display.AUTH_FILE, local_display.auth_entry(cookie)
        )
        local_xvnc.write_private(password_file, obfuscated, owner)
        async with self._host.lock():
            self._host.check_capacity(sid, spec.owned_by)
            read_fd, write_fd = os.pipe()
            argv = local_xvnc.xvnc_command(
                exe,
                session_id=sid,
                port=port,
                geometry=self._geometry,
                displayfd=write_fd,
                display=display,
                xauthority=str(xauthority),
                password_file=str(password_file),
                interface=self._interface,
                clipboard=spec.clipboard,
            )
            try:
                await asyncio.to_thread(self._spawn_xvnc, argv, state, write_fd, account)
            except BaseException:
                os.close(read_fd)
                raise
        state["display"] = await self._wait_display(state, read_fd)
        self._host.write(sid, state)
        return state

    async def _wait_display(self, state: dict[str, Any], read_fd: int) -> int:
        """The display number Xvnc reports once it accepts connections."""
        try:
            return await asyncio.to_thread(desktop_job.read_display, read_fd, self._ready_timeout)
        except EOFError:
            raise await self._launch_failure(state) from None
        except TimeoutError:
            await self._host.end(state, state["session_id"])
            tail = self._host.log_tail(state["session_id"])
            message = f"Xvnc did not get ready within {self._ready_timeout} s: {tail}"
            raise base.TemporaryFailure(message) from None
        except BaseException:  # cancellation: do not leave a half-started desktop
            await asyncio.shield(self._host.end(state, state["session_id"]))
            raise

    def _spawn_xvnc(
        self, argv: list[str], state: dict[str, Any], displayfd: int, account: Account
    ) -> None:
        """Run Xvnc detached and record it at once (also if the caller is cancelled meanwhile:
        a later start, stop or reap then finds and ends it)."""
        sid = state["session_id"]
        try:
            pid, started = self._host.spawn(
                sid,
                argv,
                self._host.session_dir(sid) / local_host.LOG_FILE,
                env=local_session.environment(self._host, account, sid),
                account=account,
                confinement=self._confinement(sid, account),
                pass_fds=(displayfd,),
            )
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.EACCES, errno.ENOEXEC):
                raise base.TemporaryFailure(f"cannot start {argv[0]} now: {exc}") from exc
            raise base.PermanentFailure(
                f"cannot run {argv[0]}: {exc}; {local_xvnc.INSTALL_HINT}"
            ) from exc
        finally:
            os.close(displayfd)
        state.update(pid=pid, start_time=started)
        self._host.write(sid, state)

    async def _launch_failure(self, state: dict[str, Any]) -> Exception:
        status = await self._host.exit_status(state["pid"], state["start_time"])
        tail = self._host.log_tail(state["session_id"])
        if status is not None and status > 0 and "Address already in use" in tail:
            return _PortTaken()
        if status is not None and status > 0 and any(m in tail for m in local_xvnc.DISPLAY_TAKEN):
            return _DisplayTaken()
        return base.PermanentFailure(f"{local_xvnc.describe_exit(status)}: {tail}")

    # ---- health -----------------------------------------------------------------------------

    async def _gone(self, state: base.ProviderState, sid: str) -> base.PollResult:
        record = self._host.read(sid)
        pid, started = state.get("pid"), state.get("start_time")
        status = await self._host.exit_status(pid, started) if isinstance(pid, int) else None
        message = f"{local_xvnc.describe_exit(status)}: {self._host.log_tail(sid)}"
        if await asyncio.to_thread(self._host.groups.group(sid).oom_kills):
            message = (
                "The desktop used more memory than its ec2InstanceType allows and the kernel "
                f"ended it (desktop_resource_scale {self._resource_scale:g}); {message}"
            )
        same = record.get("pid") == pid and record.get("start_time") == started
        if same and not record.get("ready"):
            raise base.PermanentFailure(message)  # died before it ever became ready
        return base.PollResult(base.Health.GONE, message=message)

    async def _usable(self, state: base.ProviderState, sid: str) -> str | None:
        """None once the desktop of ``state`` is usable (its window manager runs and its first
        window is mapped with the focus, :mod:`local_display`), waiting up to USABLE_WAIT
        seconds for it; otherwise what it lacks. A desktop known to be usable is not asked."""
        record = self._host.read(sid)
        if not _same_desktop(record, state) or not record.get("launched"):
            return "the desktop session is not started yet"
        if record.get("ready") or not isinstance(record.get("display"), int):
            return None
        return await asyncio.to_thread(
            local_display.wait_usable,
            record["display"],
            self._host.session_dir(sid) / local_display.AUTH_FILE,
            record.get("wait_for_window") is not False,
            USABLE_WAIT,
        )

    def _check_session(self, state: base.ProviderState, sid: str, lacking: str) -> None:
        """PermanentFailure if the desktop's session script ended before the desktop was
        usable: nothing would start its window manager or applications any more."""
        record = self._host.read(sid)
        if _same_desktop(record, state) and local_session.session_ended(record):
            tail = local_session.log_tail(self._host, sid)
            raise base.PermanentFailure(
                f"The desktop session ended before the desktop was usable ({lacking}): {tail}"
            )

    def _mark_ready(self, state: base.ProviderState, sid: str) -> dict[str, Any]:
        """Note in the record that this desktop came up: from now on its end is not a failure.
        Returns the record."""
        record = self._host.read(sid)
        if _same_desktop(record, state) and not record.get("ready"):
            record = {**record, "ready": True}
            self._host.write(sid, record)
        return record


def _same_desktop(record: dict[str, Any], state: base.ProviderState) -> bool:
    return (record.get("pid"), record.get("start_time")) == (
        state.get("pid"),
        state.get("start_time"),
    )


def _public(record: dict[str, Any]) -> base.ProviderState:
    return {key: record.get(key) for key in _STATE_KEYS}


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _session_id(value: str) -> str:
    if not _SESSION_ID.fullmatch(value):
        raise base.PermanentFailure(f"unusable session id for a desktop: {value!r}")
    return value
