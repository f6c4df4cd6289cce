"""A real OpenID Connect provider for the tests: authlib's Flask authorization server with the
authorization code grant, PKCE and the OpenID Connect code flow, served by werkzeug on a free
port in a thread of the test process. It has a discovery document, a JWKS endpoint (an RSA
key made at start), a login page where a user name is typed (or consent denied), and a
userinfo endpoint. Tests can tell it to misbehave (``Provider.misbehave``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import flask
from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6750 import BearerTokenValidator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from joserfc import jwk
from werkzeug import serving

from tests.support.server import free_port

CLIENT_ID = "opennimble-portal"
CLIENT_SECRET = "test-client-secret"

LOGIN_PAGE = """<!doctype html><title>Test IdP</title><h1>Test IdP sign-in</h1>
<form method="post"><label>User name <input name="username"></label>
<button name="decision" value="allow">Allow</button>
<button name="decision" value="deny">Deny</button></form>"""


@dataclasses.dataclass
class Client:
    client_id: str
    client_secret: str
    redirect_uri: str

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_allowed_scope(self, scope: str) -> str:
        allowed = {"openid", "profile", "email"}
        return " ".join(s for s in scope.split() if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri == self.redirect_uri

    def check_client_secret(self, client_secret: str) -> bool:
        return secrets.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclasses.dataclass
class Code:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


@dataclasses.dataclass
class Token:
    access_token: str
    scope: str
    user: str
    expires_at: float

    def check_client(self, client: Client) -> bool:
        return True

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return int(self.expires_at - time.time())

    def is_expired(self) -> bool:
        return time.time() > self.expires_at

    def is_revoked(self) -> bool:
        return False


class Provider:
    """The provider's state: its users (name -> claims), clients, codes, tokens, key, and how
    it misbehaves: ``misbehave`` holds ID token claims to override (e.g. ``{"aud": "x"}``)."""

    def __init__(self, redirect_uri: str = "") -> None:
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.key = jwk.RSAKey.generate_key(2048, parameters={"kid": "test-key", "use": "sig"})
        self.users: dict[str, dict[str, Any]] = {}
        self.clients: dict[str, Client] = {}
        self.codes: dict[str, Code] = {}
        self.tokens: dict[str, Token] = {}
        self.misbehave: dict[str, Any] = {}
        self.nonces: set[str] = set()
        self.signed_in: list[str] = []  # user names whose sign-in the login page allowed
        self.app = self._app()
        if redirect_uri:
            self.register(redirect_uri)

    def register(self, redirect_uri: str) -> None:
        self.clients[CLIENT_ID] = Client(CLIENT_ID, CLIENT_SECRET, redirect_uri)

    def user(self, name: str, **claims: Any) -> None:
        """A user of the provider whose ``preferred_username`` is ``name``."""
        self.users[name] = {"preferred_username": name, **claims}

    def settings(self, **more: Any) -> dict[str, Any]:
        """The [oidc] settings of an opennimble server using this provider."""
        return {
            "issuer": self.issuer,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "name": "Test IdP",
            **more,
        }

    def _app(self) -> flask.Flask:
        app = flask.Flask("test-oidc-provider")
        app.secret_key = secrets.token_bytes(16)
        provider = self

        class CodeGrant(grants.AuthorizationCodeGrant):
            TOKEN_ENDPOINT_AUTH_METHODS: ClassVar = ["client_secret_basic", "client_secret_post"]

            def save_authorization_code(self, code: str, request: Any) -> None:
                payload = request.payload.data
                provider.nonces.add(payload.get("nonce"))
                provider.codes[code] = Code(
                    code,
                    request.client.client_id,
                    request.payload.redirect_uri,
                    request.scope,
                    request.user,
                    payload.get("nonce"),
                    payload.get("code_challenge"),
                    payload.get("code_challenge_method"),
                    int(time.time()),
                )

            def query_authorization_code(self, code: str, client: Client) -> Code | None:
                found = provider.codes.get(code)
                return found if found and found.client_id == client.client_id else None

            def delete_authorization_code(self, authorization_code: Code) -> None:
                provider.codes.pop(authorization_code.code, None)

            def authenticate_user(self, authorization_code: Code) -> str:
                return authorization_code.user

        class IdToken(OpenIDCode):
            def exists_nonce(self, nonce: str, request: Any) -> bool:
                return nonce in provider.nonces  # a nonce a code was issued for already

            def resolve_client_private_key(self, client: Client) -> Any:
                return provider.key

            def get_client_algorithm(self, client: Client) -> str:
                return "RS256"

            def get_encode_header(self, client: Client) -> dict[str, str]:
                return {"alg": "RS256", "kid": provider.key.kid or ""}

            def get_client_claims(self, client: Client) -> dict[str, Any]:
                now = int(time.time())
                claims = {"iss": provider.issuer, "aud": [client.client_id], "exp": now + 300}
                return {**claims, **provider.misbehave}

            def get_compatible_claims(self, request: Any) -> dict[str, Any]:
                claims = super().get_compatible_claims(request)
                return {**claims, **provider.misbehave}  # iat too, when told

            def generate_user_info(self, user: str, scope: str) -> UserInfo:
                claims = provider.users[user]
                shown = {"preferred_username", "name"}
                if "email" in scope.split():
                    shown |= {"email", "email_verified"}
                return UserInfo(
                    sub=f"sub-{user}", **{k: v for k, v in claims.items() if k in shown}
                )

        def save_token(token: dict[str, Any], request: Any) -> None:
            provider.tokens[token["access_token"]] = Token(
                token["access_token"],
                token.get("scope", ""),
                request.user,
                time.time() + token.get("expires_in", 3600),
            )

        server = AuthorizationServer(app, query_client=provider.clients.get, save_token=save_token)
        server.register_grant(
            CodeGrant, [CodeChallenge(required=True), IdToken(require_nonce=True)]
        )

        class Bearer(BearerTokenValidator):
            def authenticate_token(self, token_string: str) -> Token | None:
                return provider.tokens.get(token_string)

        protect = ResourceProtector()
        protect.register_token_validator(Bearer())

        @app.get("/.well-known/openid-configuration")
        def discovery() -> Any:
            base = provider.issuer
            return {
                "issuer": provider.misbehave.get("discovery_issuer", base),
                "authorization_endpoint": f"{base}/authorize",
                "token_endpoint": f"{base}/token",
                "userinfo_endpoint": f"{base}/userinfo",
                "jwks_uri": f"{base}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
            }

        @app.get("/jwks")
        def jwks() -> Any:
            return jwk.KeySet([provider.key]).as_dict(private=False)

        @app.route("/authorize", methods=["GET", "POST"])
        def authorize() -> Any:
            name = flask.request.form.get("username", "")
            try:
                grant = server.get_consent_grant(end_user=name or None)
            except OAuth2Error as exc:  # the request itself is wrong: say so
                return f"bad authorization request: {exc}", 400
            if flask.request.method == "GET":
                return LOGIN_PAGE
            if flask.request.form.get("decision") != "allow":
                return server.create_authorization_response(grant=grant, grant_user=None)
            if name not in provider.users:
                return LOGIN_PAGE.replace("<form", "<p>No such user</p><form"), 401
            provider.signed_in.append(name)
            return server.create_authorization_response(grant=grant, grant_user=name)

        @app.post("/token")
        def token() -> Any:
            return server.create_token_response()

        @app.get("/userinfo")
        @protect("openid")
        def userinfo() -> Any:
            from authlib.integrations.flask_oauth2 import current_token

            return {"sub": f"sub-{current_token.user}", **provider.users[current_token.user]}

        return app


@contextlib.contextmanager
def running(provider: Provider) -> Iterator[Provider]:
    """Serve ``provider`` on its port (werkzeug, threaded) until the block ends."""
    httpd = serving.make_server("127.0.0.1", provider.port, provider.app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, name="test-oidc-provider", daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        httpd.shutdown()
        thread.join(timeout=10)
        httpd.server_close()
