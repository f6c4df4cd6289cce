"""Attacks from inside an artist's desktop (A) against another artist's live desktop (B).

Each case is one attempt that a curious or hostile artist would make from a terminal of their
desktop (a shell as their account, on their display), with why it must fail. Every attempt
here fails on the local provider as it is; those that need the desktop isolation of the
cluster work (cgroups, private X sockets, a private data directory) are in
``test_needs_isolation.py``.
"""

from __future__ import annotations

import pathlib
import re
import subprocess
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from opennimble.providers import local_process
from tests.security.conftest import B_SECRET, Scene
from tests.support import databases, desktops

pytestmark = [pytest.mark.xvnc, pytest.mark.security]

DENIED = re.compile(r"Permission denied|Operation not permitted")

Path = Callable[[Scene], pathlib.Path]


def in_b_runtime(name: str) -> Path:
    """A file of B's desktop's runtime directory."""
    return lambda s: pathlib.Path(s.b["runtime_dir"]) / name


def in_b_home(name: str) -> Path:
    return lambda s: pathlib.Path(s.b["home"]) / name


# what A tries to read, and why it must be refused
READS: dict[str, tuple[Path, str]] = {
    "b-home-file": (
        in_b_home("notes.txt"),
        "B's home is B's account's, mode 0700",
    ),
    "b-session-storage": (
        lambda s: s.b_storage() / "x",
        "the session's storage is in B's home",
    ),
    "b-backup-archive": (
        lambda s: s.b_backup,
        "backups are the server's (backups_dir, mode 0700)",
    ),
    "b-vnc-password-file": (
        in_b_runtime("passwd"),
        "the VNC password file is B's account's, mode 0600",
    ),
    "b-x-authority": (
        in_b_runtime("Xauthority"),
        "B's X cookie is B's account's, mode 0600",
    ),
    "b-xvnc-log": (
        in_b_runtime("xvnc.log"),
        "the desktop's logs are private",
    ),
    "b-desktop-record": (
        in_b_runtime("desktop.json"),
        "the provider's record (it holds the VNC password) is root's, mode 0600",
    ),
    "b-session-script": (
        in_b_runtime("session.sh"),
        "B's session script is B's account's, mode 0600",
    ),
    "b-session-log": (
        in_b_runtime("session.log"),
        "the session's output is B's",
    ),
    "b-user-script": (
        in_b_runtime("user_initialization-1.sh"),
        "initialization scripts may carry licence tokens: only the owner reads them",
    ),
    "b-user-script-log": (
        in_b_runtime("user_initialization-1.log"),
        "a script's output is the owner's",
    ),
    "database": (
        lambda s: s.data_dir / "opennimble.db",
        "the database (SQLite) is the server's, mode 0600: every user and secret is in it",
    ),
    "installation-key": (
        lambda s: s.data_dir / "secret.key",
        "the installation key unseals passwords and access keys: the server's, mode 0600",
    ),
}

# what A tries to list
LISTINGS: dict[str, tuple[Path, str]] = {
    "b-home": (lambda s: pathlib.Path(s.b["home"]), "B's home is closed (0700)"),
    "b-runtime-dir": (
        lambda s: pathlib.Path(s.b["runtime_dir"]),
        "desktops' runtime directories can be searched, not listed (0711)",
    ),
    "all-homes": (lambda s: s.desktops_dir / "homes", "no artist lists the accounts (0711)"),
    "all-desktops": (
        lambda s: s.desktops_dir / "desktops",
        "no artist lists the sessions (0711)",
    ),
    "backups": (lambda s: s.data_dir / "backups", "the backups are the server's (0700)"),
}

# what A tries to write (to plant something B or the server would run or trust)
WRITES: dict[str, tuple[Path, str]] = {
    "b-home-file": (
        in_b_home("notes.txt"),
        "B's home is B's account's",
    ),
    "b-bashrc": (
        in_b_home(".bashrc"),
        "a file in B's home would run in B's next terminal",
    ),
    "b-session-script": (
        in_b_runtime("session.sh"),
        "B's session script runs as B",
    ),
    "b-runtime-dir": (
        in_b_runtime("planted"),
        "B's runtime directory is root's",
    ),
    "database": (
        lambda s: s.data_dir / "opennimble.db",
        "writing the database would make A an operator",
    ),
}


def refused(done: subprocess.CompletedProcess[str]) -> bool:
    return done.returncode != 0 and DENIED.search(done.stderr) is not None


def skip_without_sqlite(target: str) -> None:
    if target == "database" and databases.postgresql():
        pytest.skip("the database is PostgreSQL: see test_a_cannot_reach_the_postgresql_port")


@pytest.mark.parametrize("target", READS, ids=list(READS))
def test_a_cannot_read(scene: Scene, target: str) -> None:
    skip_without_sqlite(target)
    path, why = READS[target]
    assert path(scene).exists(), "the target must exist for the attempt to mean anything"
    done = scene.as_a("cat", str(path(scene)))
    assert refused(done), f"A read {path(scene)}; must fail: {why}"


@pytest.mark.parametrize("target", LISTINGS, ids=list(LISTINGS))
def test_a_cannot_list(scene: Scene, target: str) -> None:
    path, why = LISTINGS[target]
    done = scene.as_a("ls", str(path(scene)))
    assert refused(done), f"A listed {path(scene)}; must fail: {why}"


@pytest.mark.parametrize("target", WRITES, ids=list(WRITES))
def test_a_cannot_write(scene: Scene, target: str) -> None:
    skip_without_sqlite(target)
    path, why = WRITES[target]
    done = scene.as_a("sh", "-c", 'echo planted >> "$1"', "sh", str(path(scene)))
    assert refused(done), f"A wrote {path(scene)}; must fail: {why}"


# ---- the X display ---------------------------------------------------------------------------

X_SETUP = """
import socket, struct, sys
path = sys.argv[1]
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    sock.connect(path.replace("@", "\\0", 1))
except OSError as exc:
    print("no-connection", exc); sys.exit(0)
auth_name, auth_data = sys.argv[2].encode(), bytes.fromhex(sys.argv[3])
pad = lambda b: b + b"\\0" * (-len(b) % 4)
sock.sendall(struct.pack("<cxHHHHxx", b"l", 11, 0, len(auth_name), len(auth_data))
             + pad(auth_name) + pad(auth_data))
print({0: "failed", 1: "success", 2: "authenticate"}.get(sock.recv(1)[0], "?"))
"""


def x_setup(scene: Scene, path: str, cookie: bytes = b"") -> str:
    """A's attempt at the X connection setup on ``path`` (``@`` for an abstract socket)."""
    name = "MIT-MAGIC-COOKIE-1" if cookie else ""
    done = scene.as_a("python3", "-c", X_SETUP, path, name, cookie.hex())
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[0]


def test_a_cannot_open_bs_display_with_as_own_cookie(scene: Scene) -> None:
    """A's terminal has A's cookie (XAUTHORITY): B's X server has its own and refuses it."""
    done = scene.as_a("xwininfo", "-root", DISPLAY=f":{scene.b['display']}")
    assert done.returncode != 0 and "unable to open display" in done.stderr


def test_a_cannot_open_bs_display_without_a_cookie(scene: Scene) -> None:
    """Without any cookie (XAUTHORITY pointing nowhere) B's X server refuses A."""
    done = scene.as_a("xwininfo", "-root", DISPLAY=f":{scene.b['display']}", XAUTHORITY="/dev/null")
    assert done.returncode != 0 and "unable to open display" in done.stderr


@pytest.mark.parametrize("abstract", [False, True], ids=["socket-file", "abstract-socket"])
def test_a_cannot_complete_the_x_setup_on_bs_sockets(scene: Scene, abstract: bool) -> None:
    """Speaking X11 directly on B's unix socket, in /tmp/.X11-unix or the abstract namespace,
    with no cookie and with a made-up one: B's X server answers Failed (or A cannot even
    connect); it never accepts."""
    path = f"{'@' if abstract else ''}/tmp/.X11-unix/X{scene.b['display']}"
    for cookie in (b"", b"\x00" * 16):
        assert x_setup(scene, path, cookie) in ("failed", "no-connection")


def test_x_does_not_listen_on_tcp(scene: Scene) -> None:
    """Xvnc runs with -nolisten tcp: there is no X port to try cookies on."""
    port = 6000 + scene.b["display"]
    probe = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=3)"
    assert scene.as_a("python3", "-c", probe).returncode != 0


# ---- the VNC port ----------------------------------------------------------------------------

VNC_PROBE = """
import socket, sys
sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
print(sock.recv(12).decode(errors="replace").strip())
"""


def test_a_cannot_connect_to_bs_vnc_port(scene: Scene) -> None:
    """Desktop accounts are filtered (nftables, by uid) from every desktop's VNC port: A's
    connection is refused before any RFB greeting; only the server's gateway connects."""
    done = scene.as_a("python3", "-c", VNC_PROBE, str(scene.b["port"]))
    assert done.returncode != 0 and "Connection refused" in done.stderr
    assert desktops.vnc_connect(scene.b["port"], None)[0] == [2]  # root (the gateway) can


def test_even_bs_true_vnc_password_does_not_get_a_in(scene: Scene) -> None:
    """Had A learned B's password anywhere, A still could not reach the port to type it."""
    script = VNC_PROBE + "\nprint('greeted')\n"
    done = scene.as_a("python3", "-c", script, str(scene.b["port"]))
    assert "greeted" not in done.stdout
    assert scene.b["password"] not in done.stdout


def test_no_process_on_the_host_shows_a_secret_in_its_command_line(scene: Scene) -> None:
    """Command lines are readable by everyone in /proc: none may hold B's VNC password, an
    access key secret, the installation key or a database password."""
    secrets = [
        scene.b["password"],
        scene.world.artist2.secret_access_key,
        scene.world.operator.secret_access_key,
        (scene.data_dir / "secret.key").read_text().strip(),
    ]
    done = scene.as_a("sh", "-c", "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '")
    assert done.stdout, "A reads the command lines of the host's processes"
    for secret in secrets:
        assert secret not in done.stdout
    assert not re.search(r"postgresql://[^/\s]*:[^@/\s]+@", done.stdout)


# ---- B's processes ---------------------------------------------------------------------------


def b_xterm(scene: Scene) -> int:
    for pid in desktops.session_pids(scene.b["session_id"]):
        comm = pathlib.Path(f"/proc/{pid}/comm")
        if comm.exists() and comm.read_text().strip() == "xterm":
            return pid
    raise AssertionError("B's desktop runs no xterm")


PROC: dict[str, tuple[list[str], str]] = {
    "environ": (["cat", "/proc/{pid}/environ"], "B's environment is B's (ptrace access mode)"),
    "fds": (["ls", "/proc/{pid}/fd"], "B's open files are B's"),
    "memory": (["dd", "if=/proc/{pid}/mem", "bs=1", "count=1"], "B's memory is B's"),
    "signal-term": (["kill", "-TERM", "{pid}"], "A may signal only A's own processes"),
    "signal-stop": (["kill", "-STOP", "{pid}"], "A may not freeze B's desktop either"),
}


@pytest.mark.parametrize("attempt", PROC, ids=list(PROC))
def test_a_cannot_touch_bs_processes(scene: Scene, attempt: str) -> None:
    argv, why = PROC[attempt]
    pid = b_xterm(scene)
    done = scene.as_a(*(part.format(pid=pid) for part in argv))
    assert refused(done), f"A's {attempt} on B's xterm succeeded; must fail: {why}"
    assert local_process.start_time_of(pid) is not None  # still running


def test_a_cannot_ptrace_bs_processes(scene: Scene) -> None:
    """PTRACE_ATTACH to a process of another uid fails with EPERM."""
    script = (
        "import ctypes, os, sys\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print(libc.ptrace(16, int(sys.argv[1]), 0, 0), ctypes.get_errno())\n"
    )
    done = scene.as_a("python3", "-c", script, str(b_xterm(scene)))
    assert done.stdout.split() == ["-1", "1"]  # EPERM


# ---- the server and the database, as someone else ----------------------------------------------


def desktop_environment(scene: Scene) -> dict[str, str]:
    pid = next(iter(desktops.session_pids(scene.a["session_id"])))
    done = scene.as_a("cat", f"/proc/{pid}/environ")
    assert done.returncode == 0, done.stderr
    pairs = (item.partition("=") for item in done.stdout.split("\0") if item)
    return {name: value for name, _, value in pairs}


def test_as_desktop_environment_carries_no_credentials(scene: Scene) -> None:
    """A's desktop gets a minimal environment: nothing of the server's settings (database
    URL, key file), no AWS credentials."""
    environment = desktop_environment(scene)
    allowed = {"OPENNIMBLE_SESSION_ID", "OPENNIMBLE_SESSION_DIR"}
    leaked = {n for n in environment if n.startswith("OPENNIMBLE_") and n not in allowed}
    assert not leaked
    assert not {n for n in environment if n.startswith(("AWS_", "PG"))}


def test_no_file_a_can_read_holds_bs_access_key_secret(scene: Scene) -> None:
    """Credentials lying around: A searches the whole installation (data directory, server log
    next to it) for B's secret access key and finds it nowhere."""
    secret = scene.world.artist2.secret_access_key
    base = scene.data_dir.parent
    done = scene.as_a("grep", "-rlF", secret, str(base))
    assert done.returncode != 0 and not done.stdout


def test_the_servers_log_holds_no_secret(scene: Scene) -> None:
    """Whoever may read the server's log (an operator, a log collector) learns no desktop
    password and no access key secret from it."""
    log = scene.world.server.log()
    for secret in (scene.b["password"], scene.world.artist2.secret_access_key):
        assert secret not in log


def test_a_cannot_reach_the_postgresql_port(scene: Scene) -> None:
    """On PostgreSQL, desktop accounts are filtered from the database's port: A cannot even
    try passwords there."""
    if not databases.postgresql():
        pytest.skip("this run's installation is on SQLite: no database port")
    port = sa.engine.make_url(databases.url_for(scene.data_dir)).port or 5432
    probe = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=3)"
    done = scene.as_a("python3", "-c", probe)
    assert done.returncode != 0 and "Connection refused" in done.stderr


def test_bs_files_still_hold_what_b_wrote(scene: Scene) -> None:
    """After every attempt, B's work is untouched."""
    assert (pathlib.Path(scene.b["home"]) / "notes.txt").read_text() == f"{B_SECRET}\n"
    assert (scene.b_storage() / "x").read_text() == f"{B_SECRET}\n"


# ---- the stream gateway ----------------------------------------------------------------------

WEBSOCKET = """
import base64, os, socket, sys, urllib.parse
url = urllib.parse.urlsplit(sys.argv[1])
sock = socket.create_connection((url.hostname, url.port), timeout=10)
key = base64.b64encode(os.urandom(16)).decode()
origin = f"http://{url.hostname}:{url.port}"
sock.sendall((f"GET {url.path} HTTP/1.1\\r\\nHost: {url.netloc}\\r\\nUpgrade: websocket\\r\\n"
              f"Connection: Upgrade\\r\\nSec-WebSocket-Key: {key}\\r\\n"
              f"Sec-WebSocket-Version: 13\\r\\nOrigin: {origin}\\r\\n"
              + "".join(f"Cookie: {c}\\r\\n" for c in sys.argv[2:]) + "\\r\\n").encode())
data = b""
while b"\\r\\n\\r\\n" not in data:
    data += sock.recv(4096)
head, _, rest = data.partition(b"\\r\\n\\r\\n")
status = head.split()[1].decode()
if status != "101":
    print("http", status); sys.exit(0)
while len(rest) < 4:
    rest += sock.recv(4096)
opcode = rest[0] & 0x0F
print("close", int.from_bytes(rest[2:4], "big") if opcode == 8 else f"opcode-{opcode}")
"""


def test_a_cannot_join_bs_stream_without_its_url(scene: Scene) -> None:
    """A knows (or guesses) B's stream id but never got its URL: the websocket into B's
    desktop, without the credential the stream page gives, is closed with 4001 (or refused)
    before any byte of B's desktop; a forged cookie does no better."""
    client = scene.world.artist2.client()
    ids = {"studioId": scene.world.studio.studio_id, "sessionId": scene.b["session_id"]}
    stream = client.create_streaming_session_stream(**ids)["stream"]
    socket_url = stream["url"].split("?")[0] + "/websocket"
    for cookies in ([], ["opennimble_stream=forged"]):
        done = scene.as_a("python3", "-c", WEBSOCKET, socket_url, *cookies)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() in (["close", "4001"], ["http", "403"]), done.stdout
