"""Portal sign-in with an external OpenID Connect provider (the ``[oidc]`` settings).

The flow is authlib's Starlette client: the provider's discovery document, the authorization
code flow with PKCE (S256), ``state`` and ``nonce`` kept in the signed portal session, the code
exchanged over authlib's async HTTP client (httpx2), and the ID token's signature checked
against the provider's JWKS and its ``iss``, ``aud``, ``exp``, ``iat`` and ``nonce`` against
what was asked. The user is then the identity store's user whose name is the configured
claim's value; they get exactly the personas and permissions that user has in the API.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import httpx2
import joserfc.errors
from authlib.integrations.base_client import errors as oauth_errors
from authlib.integrations.starlette_client import OAuth
from starlette import requests, responses

from opennimble import clock, config
from opennimble.domain import identity
from opennimble.domain.identity import Caller
from opennimble.store import database, users

log = logging.getLogger("opennimble.portal")

CALLBACK = "/portal/signin/oidc/callback"


class Refused(Exception):
    """Why an OpenID Connect sign-in failed, in words for the person signing in; ``status``
    is the HTTP status of the page saying so."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


class Provider:
    """The configured provider: starts sign-ins and turns callbacks into callers."""

    def __init__(
        self,
        settings: config.OidcSetting,
        db: database.Database,
        *,
        public_url: str,
        now: clock.Now = clock.system_now,
    ) -> None:
        self.settings = settings
        self.db = db
        self.now = now
        # the redirect URI registered with the provider: the public URL, whichever host name
        # the browser used (the sign-in must come back to the origin whose cookie holds state)
        self.redirect_uri = public_url.rstrip("/") + CALLBACK
        self.client: Any = OAuth().register(
            "oidc",
            client_id=settings.client_id,
            client_secret=settings.client_secret.get_secret_value(),
            server_metadata_url=settings.discovery_url,
            client_kwargs={
                "scope": " ".join(settings.scopes),
                "code_challenge_method": "S256",
                "timeout": settings.timeout,
            },
        )

    @property
    def name(self) -> str:
        return self.settings.name

    async def start(self, request: requests.Request) -> responses.Response:
        """The redirect to the provider's authorization endpoint (state, nonce and the PKCE
        verifier are kept in the portal session)."""
        try:
            await self._metadata()
            redirect: responses.Response = await self.client.authorize_redirect(
                request, self.redirect_uri
            )
        except Exception as exc:
            raise refusal(exc, self.name, self.settings.issuer) from None
        return redirect

    async def finish(self, request: requests.Request) -> Caller:
        """The identity store user the provider's answer at the callback signs in."""
        issuer, client_id = self.settings.issuer, self.settings.client_id
        try:
            await self._metadata()
            token = await self.client.authorize_access_token(
                request,
                claims_options={
                    "iss": {"essential": True, "value": issuer},
                    "aud": {"essential": True, "value": client_id},
                    "exp": {"essential": True},
                },
            )
            claims = token.get("userinfo")
            if claims is None:
                raise Refused(f"{self.name} sent no ID token: is `openid` among `oidc.scopes`?")
            value = claims.get(self.settings.claim)
            if value is None and self.client.server_metadata.get("userinfo_endpoint"):
                info = await self.client.userinfo(token=token)
                if info.get("sub") != claims.get("sub"):  # OpenID Connect Core 5.3.2
                    raise Refused(f"{self.name}'s userinfo is of another user than its ID token.")
                claims = {**info, **claims}
                value = claims.get(self.settings.claim)
        except Exception as exc:
            raise refusal(exc, self.name, self.settings.issuer) from None
        return await self.db.run(self._user, claims, value)

    async def _metadata(self) -> dict[str, Any]:
        """The discovery document, which must be the configured issuer's."""
        metadata: dict[str, Any] = await self.client.load_server_metadata()
        named = str(metadata.get("issuer", "")).rstrip("/")
        if named != self.settings.issuer:
            self.client.server_metadata.clear()  # looked at again next time
            raise Refused(
                f"{self.name}'s discovery document names the issuer {named!r}, not "
                f"{self.settings.issuer!r} (the `oidc.issuer` setting): an operator must fix it",
                502,
            )
        return metadata

    def _user(self, claims: dict[str, Any], value: Any) -> Caller:
        """The identity store user named by the claim's value (created if the settings say)."""
        claim, name = self.settings.claim, self.name
        if value is None:
            raise Refused(
                f"{name} did not send the `{claim}` claim that users are matched by: an "
                "operator must set `oidc.claim` to one it sends (or its scope in `oidc.scopes`).",
                403,
            )
        if not isinstance(value, str) or not value or len(value) > 128:
            raise Refused(
                f"{name}'s `{claim}` claim is not a user name (1 to 128 characters).", 403
            )
        if claim == "email" and claims.get("email_verified") is False:
            raise Refused(f"{name} has not verified the email address {value}: refused.", 403)
        with self.db.write() as conn:
            user = users.get_user_by_name(conn, value)
            if user is None and self.settings.create_users:
                with contextlib.suppress(identity.UserExists):  # by a sign-in just now
                    identity.create_user(conn, value, False, self.now())
                user = users.get_user_by_name(conn, value)
                log.info(
                    "user %s created at their first sign-in with %s",
                    value,
                    name,
                    extra={"fields": {"event": "oidc_user_created", "user": value}},
                )
        if user is None:
            raise Refused(
                f"{name} signed you in as {value!r}, but there is no such user in this "
                "studio's identity store. Ask an operator to create it "
                f"(`opennimble users create {value}`).",
                403,
            )
        if user["disabled"]:
            raise Refused("This account is disabled; an operator can enable it again.", 403)
        return Caller(user["user_id"], user["name"], bool(user["operator"]))


def refusal(exc: Exception, name: str, issuer: str) -> Refused:
    """What the person signing in with the provider ``name`` is told about a failure of the
    flow (logged too); an exception that is none of the flow's failures is raised again."""
    if isinstance(exc, Refused):
        answer = exc
    elif isinstance(exc, oauth_errors.MismatchingStateError):
        answer = Refused(
            f"This sign-in with {name} did not start in this browser or has expired (its "
            "state does not match): start again with the button below."
        )
    elif isinstance(exc, oauth_errors.OAuthError):
        why = f" ({exc.description})" if exc.description else ""
        if exc.error == "access_denied":
            answer = Refused(f"{name} did not sign you in: access_denied{why}.")
        else:
            answer = Refused(f"{name} refused the sign-in: {exc.error}{why}.")
    elif isinstance(exc, joserfc.errors.ExpiredTokenError):
        answer = Refused(
            f"The ID token {name} sent has expired (check both machines' clocks): sign in again."
        )
    elif isinstance(exc, joserfc.errors.JoseError):
        why = exc.description or exc.error
        answer = Refused(
            f"The ID token {name} sent is not valid for this portal ({why}): refused. If "
            "this persists, an operator should check the `oidc` settings.",
        )
    elif isinstance(exc, httpx2.HTTPStatusError):
        answer = Refused(
            f"{name} answered {exc.response.status_code} at {exc.request.url}: try again "
            "later, or sign in with a password.",
            502,
        )
    elif isinstance(exc, httpx2.HTTPError):
        answer = Refused(
            f"Could not reach {name} at {issuer} ({type(exc).__name__}: "
            f"{exc or 'no answer'}): try again later, or sign in with a password.",
            502,
        )
    elif isinstance(exc, RuntimeError | ValueError | KeyError | TypeError):
        # authlib's words for a discovery document or token answer it cannot use
        answer = Refused(
            f"{name}'s answer could not be used ({exc}): an operator must check it.", 502
        )
    else:
        raise exc
    log.warning(
        "OpenID Connect sign-in refused: %s",
        answer,
        extra={"fields": {"event": "oidc_refused", "reason": type(exc).__name__}},
    )
    return answer
