"""Whether a desktop's X display is *usable*: its window manager runs and, unless the recipe
says its applications open no window, an application window is mapped, managed and has the
keyboard focus, so that what the artist types right after READY arrives.

The provider asks the display itself, as an X client (python-xlib) through the X socket of the
display, with the desktop's cookie from a file of its own (``provider.xauth``, root's, mode
0600: the desktop's ``Xauthority`` belongs to its account). A window manager is one that owns
the screen's ``WM_S<n>`` selection (ICCCM 2.0: every maintained window manager takes it when it
starts managing the screen) or names its check window in ``_NET_SUPPORTING_WM_CHECK`` (EWMH).
An application window is one the window manager lists in ``_NET_CLIENT_LIST`` (EWMH), or, for
window managers without it, a top-level window carrying ``WM_STATE`` NormalState (ICCCM).

Waiting is driven by the display's events (new and mapped windows, property and focus
changes on the root window), not by sleeping: :func:`wait_usable` returns the moment the
display becomes usable.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

from Xlib import X, Xatom, error
from Xlib.display import Display
from Xlib.protocol import display as protocol_display
from Xlib.support import unix_connect
from Xlib.xobject.drawable import Window

from opennimble.providers import desktop_job

WM_STATE_NORMAL = 1
ROOT_EVENTS = X.SubstructureNotifyMask | X.PropertyChangeMask | X.FocusChangeMask
WINDOW_EVENTS = X.SubstructureNotifyMask | X.FocusChangeMask | X.PropertyChangeMask
LOOK_AGAIN = 0.05  # seconds between looks at the display when no event comes
ASK_AGAIN = 0.01  # seconds before asking a window manager that does not answer again
REDIRECT_LOOK = 0.002  # seconds between looks for a window manager's redirection
AUTH_FILE = "provider.xauth"
FAMILY_LOCAL = 256
# python-xlib reads the cookie's file from XAUTHORITY while it connects: one connect at a time
_CONNECTING = threading.Lock()


class Unreachable(Exception):
    """The display does not accept this client (not running, or the cookie is refused)."""


def auth_entry(cookie: bytes) -> bytes:
    """An Xauthority entry granting MIT-MAGIC-COOKIE-1 ``cookie`` on this host's local
    displays (python-xlib matches entries by host name, not the wildcard the desktop's has)."""

    def counted(value: bytes) -> bytes:
        return struct.pack(">H", len(value)) + value

    fields = (socket.gethostname().encode(), b"", b"MIT-MAGIC-COOKIE-1", cookie)
    return struct.pack(">H", FAMILY_LOCAL) + b"".join(counted(field) for field in fields)


@contextlib.contextmanager
def connect(display: int, xauthority: pathlib.Path) -> Iterator[Display]:
    """A connection to local display ``:display`` authorized by the cookie in
    ``xauthority`` (an :func:`auth_entry`)."""
    # The display's abstract socket, never a file in this process's /tmp/.X11-unix nor TCP:
    # the desktop's socket file is in its own directory (local_confine), while its abstract
    # name is held by its own X server; a file of that name here would be stale or someone's.
    with _CONNECTING:
        saved = os.environ.get("XAUTHORITY")
        os.environ["XAUTHORITY"] = str(xauthority)
        chosen = unix_connect.get_socket
        unix_connect.get_socket = _abstract_socket  # type: ignore[assignment]
        try:
            conn = Display(f"unix:{display}")
        except (error.DisplayError, error.ConnectionClosedError, OSError) as exc:
            _close_sockets(exc)
            raise Unreachable(str(exc)) from None
        finally:
            unix_connect.get_socket = chosen
            if saved is None:
                os.environ.pop("XAUTHORITY", None)
            else:
                os.environ["XAUTHORITY"] = saved
    try:
        yield conn
    finally:
        with contextlib.suppress(Exception):
            conn.close()


def _abstract_socket(dname: str, protocol: object, host: object, dno: int) -> socket.socket:
    """python-xlib's ``get_socket`` while :func:`connect` holds the lock: display ``dno``'s
    abstract socket."""
    del protocol, host
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(f"\0/tmp/.X11-unix/X{dno}")
    except OSError as exc:
        sock.close()
        raise error.DisplayConnectionError(dname, str(exc)) from None
    return sock


def _close_sockets(exc: BaseException) -> None:
    """Close the socket python-xlib opened before it failed (the display refused the cookie:
    a display number taken over by another server), which it leaves to the collector."""
    frame = exc.__traceback__
    while frame is not None:
        owner = frame.tb_frame.f_locals.get("self")
        sock = vars(owner).get("socket") if isinstance(owner, protocol_display.Display) else None
        if isinstance(sock, socket.socket):
            sock.close()
        frame = frame.tb_next


def missing(conn: Display, want_window: bool) -> str | None:
    """What the display still lacks to be usable (None: nothing)."""
    screen = conn.screen()
    root = screen.root
    if not _window_manager(conn, root, conn.get_default_screen()):
        return "the window manager is not running yet"
    if not want_window:
        return None
    clients = [c for c in _clients(conn, root) if _viewable(c)]
    if not clients:
        return "no application window is mapped yet"
    focus = conn.get_input_focus().focus
    if not isinstance(focus, Window) or not any(_within(conn, focus, c) for c in clients):
        return "no application window has the keyboard focus yet"
    return None


def wait_usable(
    display: int, xauthority: pathlib.Path, want_window: bool, timeout: float
) -> str | None:
    """Wait up to ``timeout`` seconds for the display to be usable; None once it is, otherwise
    what it still lacks. Blocking (run it in a thread)."""
    deadline = time.monotonic() + timeout
    try:
        with connect(display, xauthority) as conn:
            return _wait_usable(conn, want_window, deadline)
    except Unreachable as exc:
        return f"the X display is not reachable yet ({exc})"
    except (error.XError, error.ConnectionClosedError, OSError) as exc:
        return f"the X display went away ({exc})"


def _wait_usable(conn: Display, want_window: bool, deadline: float) -> str | None:
    root = conn.screen().root
    root.change_attributes(event_mask=ROOT_EVENTS)
    conn.sync()
    while True:
        lacking = missing(conn, want_window)
        left = deadline - time.monotonic()
        if lacking is None or left <= 0:
            return lacking
        _next_events(conn, left)


def wait_window_manager(
    display: int,
    xauthority: pathlib.Path,
    timeout: float,
    managing: Callable[[], object] | None = None,
) -> str | None:
    """Wait up to ``timeout`` seconds until a window manager runs on the display and answers:
    owning the screen is not enough, a window manager still starting up handles no request (an
    xterm that asks to be resized then waits 5 s for an answer). So a window of our own asks
    to be resized, through the window manager, until the answer comes. ``managing`` is called
    as soon as the window manager manages the screen (it owns the screen and redirects the
    requests of new windows to itself), before it answers: applications started from then on
    are the window manager's from their first window on, and the questions asked until it
    answers wake it for theirs too (Openbox handles nothing that came while it started up
    until something else comes)."""
    deadline = time.monotonic() + timeout
    try:
        with connect(display, xauthority) as conn:  # one connection: each costs CPU time
            lacking = _wait_usable(conn, False, deadline)
            if lacking is not None:
                return lacking
            if not _redirected(conn, deadline):
                return "the window manager does not manage the screen yet"
            if managing is not None:
                managing()
            if _answers(conn, deadline):
                return None
            return "the window manager does not answer yet"
    except Unreachable as exc:
        return f"the X display is not reachable yet ({exc})"
    except (error.XError, error.ConnectionClosedError, OSError) as exc:
        return f"the X display went away ({exc})"


def _redirected(conn: Display, deadline: float) -> bool:
    """Whether, before ``deadline``, a client redirects the root window's children's
    configuration requests to itself, as a window manager does once it manages the screen.
    A window manager takes the screen's selection first: until it redirects them too, a
    resize of ours passes straight to the server, and its answer would say nothing."""
    root = conn.screen().root
    while True:
        if root.get_attributes().all_event_masks & X.SubstructureRedirectMask:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(REDIRECT_LOOK)


def _answers(conn: Display, deadline: float) -> bool:
    """Whether the window manager passes on a resize of an unmapped window of ours (ICCCM: it
    must, for windows it does not manage) before ``deadline``. It is asked again and again:
    Openbox leaves the requests that came while it started up unanswered, and answers the
    first that comes once it handles its events."""
    root = conn.screen().root
    probe = root.create_window(
        -10, -10, 1, 1, 0, 0, X.InputOnly, X.CopyFromParent, event_mask=X.StructureNotifyMask
    )
    try:
        for attempt in range(1_000_000):
            probe.configure(width=2 + attempt % 2)  # a real change each time
            conn.flush()
            wait_until = min(deadline, time.monotonic() + ASK_AGAIN)
            while time.monotonic() < wait_until:
                if not conn.pending_events():
                    # the time left, never below 0 (the clock moves between the two looks)
                    left = max(0.0, wait_until - time.monotonic())
                    desktop_job.wait_readable(conn.fileno(), left)
                for _ in range(conn.pending_events()):
                    event = conn.next_event()
                    if event.type == X.ConfigureNotify and event.window.id == probe.id:
                        return True
            if time.monotonic() >= deadline:
                break
        return False
    finally:
        probe.destroy()
        conn.sync()


def _next_events(conn: Display, timeout: float) -> None:
    """Block until the display sends something (or ``timeout``, at most LOOK_AGAIN), then
    drain what came; the caller looks at the display again. Windows created by others are
    watched too. (Not every change that matters reaches the root window as an event: focus
    passing between two of its descendants does not, hence LOOK_AGAIN.)"""
    if not conn.pending_events():
        desktop_job.wait_readable(conn.fileno(), min(timeout, LOOK_AGAIN))
    for _ in range(conn.pending_events()):
        event = conn.next_event()
        if event.type == X.CreateNotify:  # its children (a window manager's frame) matter too
            with contextlib.suppress(error.XError):
                event.window.change_attributes(event_mask=WINDOW_EVENTS)


def _window_manager(conn: Display, root: Window, screen: int) -> bool:
    owner = conn.get_selection_owner(conn.intern_atom(f"WM_S{screen}"))
    if owner not in (0, X.NONE) and owner is not None:
        return True
    check = root.get_full_property(conn.intern_atom("_NET_SUPPORTING_WM_CHECK"), Xatom.WINDOW)
    return bool(check and len(check.value))


def _clients(conn: Display, root: Window) -> list[Window]:
    listed = root.get_full_property(conn.intern_atom("_NET_CLIENT_LIST"), Xatom.WINDOW)
    if listed is not None:
        return [conn.create_resource_object("window", wid) for wid in listed.value]
    wm_state = conn.intern_atom("WM_STATE")
    found = []
    for top in root.query_tree().children:  # the clients, or the frames holding them
        for window in [top, *_children(top)]:
            prop = window.get_full_property(wm_state, wm_state)
            if prop is not None and len(prop.value) and prop.value[0] == WM_STATE_NORMAL:
                found.append(window)
    return found


def _children(window: Window) -> list[Window]:
    try:
        return list(window.query_tree().children)
    except error.XError:
        return []


def _viewable(window: Window) -> bool:
    try:
        return bool(window.get_attributes().map_state == X.IsViewable)
    except error.XError:  # destroyed meanwhile
        return False


def _within(conn: Display, window: Window, ancestor: Window) -> bool:
    """Whether ``window`` is ``ancestor`` or inside it."""
    root = conn.screen().root.id
    current = window
    for _ in range(64):
        if current.id == ancestor.id:
            return True
        if current.id == root:
            return False
        try:
            current = current.query_tree().parent
        except error.XError:
            return False
    return False
