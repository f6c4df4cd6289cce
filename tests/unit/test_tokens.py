"""nextToken and stream tokens: opaque, bound to what they were made for, tamper-evident."""

from __future__ import annotations

import pytest

from opennimble import errors
from opennimble.domain import paging, stream_tokens


def test_next_token_round_trip_and_tampering() -> None:
    codec = paging.TokenCodec(b"k" * 32)
    token = codec.encode("listing-a", (123, "abc"))
    assert codec.decode("listing-a", token) == (123, "abc")
    with pytest.raises(errors.ValidationException, match="nextToken"):
        codec.decode("listing-b", token)  # another listing's token
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    for bad in (flipped, "garbage", "", token + "x"):
        with pytest.raises(errors.ValidationException):
            codec.decode("listing-a", bad)
    with pytest.raises(errors.ValidationException):
        paging.TokenCodec(b"other" * 8).decode("listing-a", token)  # another installation


def test_stream_tokens_are_bound_to_stream_session_and_expiry() -> None:
    tokens = stream_tokens.StreamTokens(b"k" * 32)
    token = tokens.token("stream", "session", 100)
    assert len(token) >= 43  # 256 bits
    assert tokens.check(token, "stream", "session", 100)
    assert not tokens.check(token, "stream2", "session", 100)
    assert not tokens.check(token, "stream", "session2", 100)
    assert not tokens.check(token, "stream", "session", 101)
    assert tokens.url("http://h:1", "stream", "session", 100) == (
        f"http://h:1/streams/stream?token={token}"
    )
