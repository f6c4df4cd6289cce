"""Where nftables is missing, the local provider says so at start and at the first desktop,
and desktops run unfiltered rather than not at all."""

from __future__ import annotations

import logging
import pathlib

import pytest

from opennimble.providers import local_network


def test_without_nft_the_provider_warns_and_the_filter_is_off(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(local_network.shutil, "which", lambda *_, **__: None)
    with caplog.at_level(logging.WARNING, "opennimble.providers.local"):
        local_network.warn_if_unavailable()
        firewall = local_network.Firewall(local_network.table_name(pathlib.Path("/srv/on")))
        assert firewall.build([1000], [5432]) is False
        firewall.close_port(5901)  # nothing to do, no error
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2
    assert all("the deployment" in message and "README" in message for message in messages)


def test_the_database_port_is_closed_only_for_postgresql() -> None:
    assert local_network.database_ports("postgresql://db.internal:6432/on") == {6432}
    assert local_network.database_ports("postgresql+psycopg://u@db/on") == {5432}
    assert local_network.database_ports("sqlite:////srv/on/opennimble.db") == set()
