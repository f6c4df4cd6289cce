"""One exception class per error shape of the nimble model.

The class name is the wire error type (``x-amzn-ErrorType``) and ``status`` is the shape's
``httpStatusCode`` in the model (a unit test holds the two together). ``message`` is what the
user sees; ``detail`` is extra context for the server log only, never sent (the split follows
JupyterHub's SpawnException).
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base of every error the API answers with."""

    status: int = 500

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        context: dict[str, str] | None = None,
        detail: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.context = context or {}
        self.detail = detail

    @property
    def error_type(self) -> str:
        return type(self).__name__

    def body(self) -> dict[str, object]:
        """The error document, as the model's error shapes define it."""
        out: dict[str, object] = {"message": self.message}
        if self.code:
            out["code"] = self.code
        if self.context:
            out["context"] = self.context
        return out


class ValidationException(ServiceError):
    status = 400

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        context: dict[str, str] | None = None,
        detail: str = "",
        problems: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(message, code=code, context=context, detail=detail)
        # each problem's field path and message (never sent: the message says it all), for
        # forms that show each problem next to its field
        self.problems = problems or [
            (field, message) for field in (context or {}).get("fields", "").split(",") if field
        ]


class AccessDeniedException(ServiceError):
    status = 403


class ResourceNotFoundException(ServiceError):
    status = 404


class ConflictException(ServiceError):
    status = 409


class ServiceQuotaExceededException(ServiceError):
    status = 402


class ThrottlingException(ServiceError):
    status = 429


class InternalServerErrorException(ServiceError):
    status = 500


ALL: tuple[type[ServiceError], ...] = (
    ValidationException,
    AccessDeniedException,
    ResourceNotFoundException,
    ConflictException,
    ServiceQuotaExceededException,
    ThrottlingException,
    InternalServerErrorException,
)


class AuthenticationError(ServiceError):
    """A request that is not (correctly) signed. These are not error shapes of the nimble
    model but the errors every AWS endpoint answers such requests with, by the same names and
    status, so that SDKs and users' ``except`` clauses see what AWS gave them."""

    status = 403


class MissingAuthenticationTokenException(AuthenticationError):
    """No Authorization header (an unsigned request)."""


class IncompleteSignatureException(AuthenticationError):
    """An Authorization header or X-Amz-Date that is malformed or incomplete."""


class UnrecognizedClientException(AuthenticationError):
    """An access key id (or security token) the identity store does not know."""


class InvalidSignatureException(AuthenticationError):
    """A signature that does not match, is expired, or is scoped to another region/service."""


AUTHENTICATION: tuple[type[AuthenticationError], ...] = (
    MissingAuthenticationTokenException,
    IncompleteSignatureException,
    UnrecognizedClientException,
    InvalidSignatureException,
)


def not_found(kind: str, resource_id: str) -> ResourceNotFoundException:
    """The error for a resource that does not exist (or that the caller may not know of)."""
    return ResourceNotFoundException(
        f"{kind} '{resource_id}' does not exist", context={"resourceId": resource_id}
    )
