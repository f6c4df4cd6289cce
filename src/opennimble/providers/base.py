"""The provider contract: how the reconciler asks a backend for desktops.

A provider turns a streaming session into a running desktop and back. It is small on purpose,
in the spirit of JupyterHub's Spawner:

* Every method is a coroutine and must not block the event loop for long (run blocking work in
  a thread or a subprocess).
* The provider keeps no authority of its own over what exists. Everything it needs to find a
  desktop again is in the *state* it returns: a JSON-serialisable ``dict`` that the reconciler
  stores in the database next to the session and passes back on every later call, also after a
  restart of the server. State must therefore be enough to re-attach to, or clean up, a desktop
  started by an earlier process. The reconciler always sets ``state["session_id"]`` to the
  session's id before a call, also when the provider never returned a state (the process may
  have died between starting a desktop and recording its state), so a provider can find a
  desktop by session id alone.
* Every method is idempotent: ``start`` for a session whose desktop already runs re-attaches
  and returns its state; ``stop`` and ``delete`` of a desktop that is already gone succeed.
* Failures are classified. Raise :class:`TemporaryFailure` for what may succeed when tried
  again (the reconciler retries with back-off), :class:`PermanentFailure` for what will not
  (the session goes to its ``*_FAILED`` state with the failure's status code and message).
  Any other exception counts as temporary. Status codes of the model that fit:
  ``INSUFFICIENT_CAPACITY`` (the host runs as many desktops as it may),
  ``INITIALIZATION_SCRIPT_ERROR`` (a studio component's script failed; say which, and how),
  ``AMI_VALIDATION_ERROR`` (what the image needs is not there), ``INTERNAL_ERROR`` otherwise.
* A READY desktop's endpoint is ``{"host", "port", "password"}``: a VNC server there that
  asks for VNC authentication with that password, so that only the stream gateway, which is
  told the password, can use it. The reconciler stores the password only sealed; a provider
  must not put it in its state (which the database keeps in clear).
* The reconciler, not the provider, records outcomes, owns retries and enforces timeouts.

Providers are found by entry point name in the ``opennimble.providers`` group, so a third
party package can add one without touching opennimble.
"""

from __future__ import annotations

import abc
import dataclasses
import enum
from typing import Any

from opennimble import config

ProviderState = dict[str, Any]


SYSTEM_INITIALIZATION = "SYSTEM_INITIALIZATION"
USER_INITIALIZATION = "USER_INITIALIZATION"


@dataclasses.dataclass(frozen=True)
class InitScript:
    """A LINUX initialization script of a studio component of the session's launch profile.

    ``SYSTEM_INITIALIZATION`` scripts run before the desktop starts: as the provider's
    privileged user only if ``privileged`` (an operator wrote the component), otherwise as the
    owner, unprivileged; ``USER_INITIALIZATION`` scripts run inside the owner's session, as the
    owner, with the desktop's display. ``parameters`` are the component's ``scriptParameters``,
    given to the script as environment variables. A script that fails (or outlasts the
    provider's time limit) fails the start with ``INITIALIZATION_SCRIPT_ERROR``.
    """

    component: str  # the studio component's name
    run_context: str  # SYSTEM_INITIALIZATION or USER_INITIALIZATION
    script: str
    parameters: tuple[tuple[str, str], ...] = ()
    privileged: bool = False


@dataclasses.dataclass(frozen=True)
class DesktopSpec:
    """What a desktop is asked to be: everything the provider may need from the session.

    ``ec2_image_id`` selects what runs on the desktop (the local provider's desktop recipes);
    ``clipboard`` is False when the launch profile's ``clipboardMode`` is DISABLED, and the
    provider must then keep the clipboard of the desktop closed both ways; ``init_scripts``
    run in their order, each at its run context.
    """

    session_id: str
    studio_id: str
    owned_by: str
    owner_name: str
    ec2_instance_type: str
    ec2_image_id: str
    launch_profile_id: str
    clipboard: bool = True
    init_scripts: tuple[InitScript, ...] = ()
    # the launch profile's maxSessionLengthInMinutes (a scheduler's time limit), if known
    max_session_minutes: int | None = None


class Health(enum.Enum):
    """What :meth:`Provider.poll` reports of a desktop."""

    STARTING = "STARTING"  # still coming up: poll again
    READY = "READY"  # the owner can connect
    GONE = "GONE"  # no desktop is running for this state (a READY one is started again)
    # the desktop ended for good (its batch job was cancelled or failed outside opennimble):
    # a starting session fails, a READY one is stopped, with the message as its statusMessage
    ENDED = "ENDED"


@dataclasses.dataclass(frozen=True)
class PollResult:
    health: Health
    # Where a client (the stream gateway) reaches the desktop once READY: {"host": ...,
    # "port": ..., "password": ...} for a VNC server that asks for VNC authentication with that
    # password. Empty otherwise.
    endpoint: dict[str, Any] = dataclasses.field(default_factory=dict)
    message: str = ""
    status_code: str = "INTERNAL_ERROR"  # for ENDED: the model status code of the failure


class ProviderFailure(Exception):
    """A failure of a provider operation; ``status_code`` is a model status code."""

    def __init__(self, message: str, status_code: str = "INTERNAL_ERROR") -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


class TemporaryFailure(ProviderFailure):
    """May succeed if tried again later: after ``retry_in`` seconds when the provider knows
    (a scheduler that is restarting, a port that frees up), else after the reconciler's own
    back-off."""

    def __init__(
        self, message: str, status_code: str = "INTERNAL_ERROR", *, retry_in: float | None = None
    ) -> None:
        super().__init__(message, status_code)
        self.retry_in = retry_in


class PermanentFailure(ProviderFailure):
    """Will not succeed by retrying: the session fails with this status code and message."""


class Provider(abc.ABC):
    """Base class of desktop providers. Subclasses are built with the installation settings."""

    #: The entry point name under which the provider is registered.
    name: str = ""
    #: Seconds a desktop may take to come up (the reconciler's deadline for a start, before
    #: :meth:`start_timeout`); providers set it from their settings.
    ready_timeout: float = 60.0
    #: Desktops this host runs at most at once: the reconciler claims no more new sessions.
    capacity: int = 16

    @classmethod
    def from_settings(cls, settings: config.Settings) -> Provider:
        """Build the provider from the installation settings."""
        raise NotImplementedError(f"{cls.__name__} does not say how to build it from settings")

    def start_timeout(self, ready_timeout: float) -> float:
        """Seconds a session may take from its start to READY (after that it fails), given
        the installation's ``desktop_ready_timeout``. A provider whose desktops may wait in a
        queue first (a batch scheduler's) adds that wait."""
        return ready_timeout

    @abc.abstractmethod
    async def start(self, spec: DesktopSpec, state: ProviderState) -> ProviderState:
        """Start (or re-attach to) the desktop of ``spec`` and return its state.

        ``state`` is what an earlier call returned for this session, or ``{}``. Returning does
        not mean the desktop is ready: the reconciler polls until :meth:`poll` says READY.
        """

    @abc.abstractmethod
    async def poll(self, state: ProviderState) -> PollResult:
        """Report the health of the desktop described by ``state``."""

    @abc.abstractmethod
    async def stop(self, state: ProviderState, *, discard_storage: bool = False) -> ProviderState:
        """End the desktop's processes and return the state to keep.

        The session's storage is kept for a later :meth:`start`, unless ``discard_storage``
        (``volumeRetentionMode`` DELETE): then it is discarded and the next start gets it empty.
        """

    @abc.abstractmethod
    async def delete(self, state: ProviderState) -> None:
        """End the desktop and release everything it holds, its storage included (not what
        belongs to the owner rather than the session). A missing desktop is not an error."""

    # ---- backups (optional: launch profiles with sessionBackup.mode AUTOMATIC need them) ----

    async def back_up(self, state: ProviderState, backup_id: str) -> ProviderState:
        """Copy the session's storage into a new backup named ``backup_id``; return the
        backup's own state (what :meth:`restore` and :meth:`delete_backup` are given).

        Called after :meth:`stop`, while no desktop runs for the session, and before the
        storage is discarded. Idempotent: a backup that exists already is returned again. A
        :class:`PermanentFailure` fails the backup, not the stop.
        """
        raise PermanentFailure(f"the {self.name or type(self).__name__} provider takes no backups")

    async def restore(self, spec: DesktopSpec, state: ProviderState, backup: ProviderState) -> None:
        """Replace the session's storage with the content of ``backup`` (a state
        :meth:`back_up` returned for this session), before :meth:`start` is called.

        A provider must leave a session whose desktop already runs alone (an earlier attempt
        restored it and started the desktop).
        """
        raise PermanentFailure(
            f"the {self.name or type(self).__name__} provider cannot restore backups"
        )

    async def delete_backup(self, backup: ProviderState) -> None:  # noqa: B027 - optional hook
        """Remove a backup :meth:`back_up` took; a missing one is not an error."""

    async def reap(self, known: set[str]) -> list[str]:
        """Clean up desktops this provider runs for sessions not in ``known``.

        Called by the reconciler at start-up, so that a desktop whose record was purged does
        not outlive it. Returns the session ids it cleaned up. The default does nothing.
        """
        return []

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release the provider's own resources when the process shuts down.

        Desktops are *not* stopped: they outlive the server and are re-attached on restart.
        """
