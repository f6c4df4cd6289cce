"""Assertions on the errors a boto3 user sees."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

STATUS = {
    "ValidationException": 400,
    "ServiceQuotaExceededException": 402,
    "AccessDeniedException": 403,
    "ResourceNotFoundException": 404,
    "ConflictException": 409,
    "ThrottlingException": 429,
    # not in the model: what every AWS endpoint answers a request that is not correctly signed
    "UnrecognizedClientException": 403,
    "InvalidSignatureException": 403,
    "IncompleteSignatureException": 403,
    "MissingAuthenticationTokenException": 403,
}


def error(call: Callable[[], Any], kind: str, *words: str) -> dict[str, Any]:
    """``call`` raises the modelled ``kind`` with its HTTP status, and its message names every
    one of ``words``; return the error response."""
    with pytest.raises(ClientError) as info:
        call()
    response: dict[str, Any] = info.value.response
    assert response["Error"]["Code"] == kind, response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == STATUS[kind], response
    message = str(response["Error"]["Message"])
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    return response
