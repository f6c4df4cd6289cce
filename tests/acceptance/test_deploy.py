"""The samples of deploy/: the systemd unit is one systemd accepts, and the nginx configuration
is one nginx accepts and that really serves opennimble over TLS: boto3 (SigV4 through the
proxy), a stream page and its websocket reaching the desktop (the gateway behind nginx)."""

from __future__ import annotations

import contextlib
import datetime
import pathlib
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator

import boto3
import botocore.config
import pytest
import requests
import websockets.sync.client
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support import vnc
from tests.support import world as worlds
from tests.support.server import FAST, REGION, SOURCE_TREE, Server, free_port

DEPLOY = SOURCE_TREE / "deploy"
UNIT = DEPLOY / "opennimble.service"
SITE = DEPLOY / "nginx" / "opennimble.conf"
NO_NGINX = "nginx is not installed: install Debian's nginx-light (make test-packages does as root)"


def test_the_systemd_unit_is_valid(tmp_path: pathlib.Path) -> None:
    """`systemd-analyze verify` accepts it without a warning (unknown keys are only warned
    about), with ExecStart pointing at this installation's `opennimble`."""
    executable = shutil.which("opennimble", path=str(pathlib.Path(sys.executable).parent))
    assert executable is not None
    text = UNIT.read_text()
    assert "ExecStart=/opt/opennimble/venv/bin/opennimble serve " in text
    unit = tmp_path / "opennimble.service"
    unit.write_text(text.replace("/opt/opennimble/venv/bin/opennimble", executable))
    analyze = shutil.which("systemd-analyze")
    if analyze is None:  # no systemd here: at least every line is a section, key or comment
        for line in text.splitlines():
            assert re.match(r"^(#.*|\[(Unit|Service|Install)\]|[A-Za-z]+=.*|)$", line), line
        return
    checked = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert checked.stderr.strip() == "", checked.stderr


def self_signed(directory: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """A certificate for localhost (and its key), which the test's clients trust."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def site_for(directory: pathlib.Path, upstream: int, http: int, https: int) -> pathlib.Path:
    """The sample, with this test's ports, host name and certificate; and a main nginx.conf
    that includes it as /etc/nginx/nginx.conf includes conf.d/."""
    cert, key = self_signed(directory)
    site = (
        SITE.read_text()
        .replace("127.0.0.1:8000", f"127.0.0.1:{upstream}")
        .replace("studio.example.com", "localhost")
        .replace("/etc/letsencrypt/live/localhost/fullchain.pem", str(cert))
        .replace("/etc/letsencrypt/live/localhost/privkey.pem", str(key))
        .replace("listen 80;", f"listen 127.0.0.1:{http};")
        .replace("listen 443 ssl http2;", f"listen 127.0.0.1:{https} ssl http2;")
    )
    site = "\n".join(line for line in site.splitlines() if "listen [::]" not in line)
    (directory / "site.conf").write_text(site)
    main = directory / "nginx.conf"
    main.write_text(
        f"user root;\npid {directory}/nginx.pid;\nerror_log stderr;\nevents {{}}\n"
        f"http {{\n    access_log off;\n    include {directory}/site.conf;\n}}\n"
    )
    return main


def test_the_nginx_sample_is_valid(tmp_path: pathlib.Path) -> None:
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if nginx is None:
        pytest.skip(NO_NGINX)
    main = site_for(tmp_path, 8000, free_port(), free_port())
    checked = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(main)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr
    assert "test is successful" in checked.stderr


@contextlib.contextmanager
def nginx_running(main: pathlib.Path, port: int) -> Iterator[None]:
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if nginx is None:
        pytest.skip(NO_NGINX)
    log = main.parent / "nginx.log"
    with log.open("wb") as errors:
        process = subprocess.Popen(
            [nginx, "-p", str(main.parent), "-c", str(main), "-g", "daemon off;"], stderr=errors
        )
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket_to(port):
                break
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "nginx did not listen"
            time.sleep(0.05)
        yield
    finally:
        process.terminate()
        process.wait(10)


def socket_to(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=1)


@pytest.fixture(scope="module")
def behind_nginx(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[worlds.World, str, str]]:
    """A world whose server sits behind the nginx sample; the proxy's https URL; the
    certificate it presents (which clients trust)."""
    directory = tmp_path_factory.mktemp("nginx")
    https = free_port()
    public = f"https://localhost:{https}"
    data_dir = tmp_path_factory.mktemp("behind") / "data"
    server = Server(data_dir, env={"OPENNIMBLE_PUBLIC_URL": public})
    main = site_for(directory, server.port, free_port(), https)
    with nginx_running(main, https), worlds.served(server) as world:
        yield world, public, str(directory / "cert.pem")


@pytest.mark.xvnc
def test_clients_and_streams_work_through_the_proxy(
    behind_nginx: tuple[worlds.World, str, str],
) -> None:
    world, public, cert = behind_nginx
    artist = boto3.client(
        "nimble",
        endpoint_url=public,
        region_name=REGION,
        aws_access_key_id=world.artist.access_key_id,
        aws_secret_access_key=world.artist.secret_access_key,
        verify=cert,
        config=botocore.config.Config(retries={"mode": "standard", "max_attempts": 1}),
    )
    ids = {"studioId": world.studio.studio_id}
    session = artist.create_streaming_session(
        **ids, launchProfileId=world.studio.launch_profile_id
    )["session"]
    ids["sessionId"] = session["sessionId"]
    artist.get_waiter("streaming_session_ready").wait(**ids, WaiterConfig=FAST)
    url = artist.create_streaming_session_stream(**ids)["stream"]["url"]
    assert url.startswith(f"{public}/streams/")
    page = requests.get(url, timeout=10, verify=cert)
    assert page.status_code == 200, page.text
    assert "secure" in page.headers["set-cookie"].lower()
    context = ssl.create_default_context(cafile=cert)
    socket_url = url.split("?")[0].replace("https://", "wss://") + "/websocket"
    with websockets.sync.client.connect(
        socket_url,
        additional_headers={"Cookie": f"opennimble_stream={page.cookies['opennimble_stream']}"},
        origin=public,  # type: ignore[arg-type]
        ssl=context,
        compression=None,
        proxy=None,
        max_size=None,
        open_timeout=10,
    ) as ws:
        init = vnc.RfbClient(ws).handshake()
    assert (init.width, init.height) == (1280, 800)
    artist.delete_streaming_session(**ids)
    artist.get_waiter("streaming_session_deleted").wait(**ids, WaiterConfig=FAST)
