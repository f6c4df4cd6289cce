"""A provider whose desktops are ready at once, for the scale benchmarks only.

It lets a benchmark measure the control plane (API, database, reconciler) without the cost of
real desktops. It is not part of opennimble: ``bench.scale_common.instant_provider_path``
registers it under the ``opennimble.providers`` entry point group (name ``instant``) for the
processes a benchmark starts, and nowhere else.
"""

from __future__ import annotations

from opennimble import config
from opennimble.providers import base


class InstantProvider(base.Provider):
    name = "instant"

    @classmethod
    def from_settings(cls, settings: config.Settings) -> InstantProvider:
        return cls()

    async def start(self, spec: base.DesktopSpec, state: base.ProviderState) -> base.ProviderState:
        return {"session_id": spec.session_id}

    async def poll(self, state: base.ProviderState) -> base.PollResult:
        return base.PollResult(base.Health.READY, endpoint={"host": "127.0.0.1", "port": 5900})

    async def stop(
        self, state: base.ProviderState, *, discard_storage: bool = False
    ) -> base.ProviderState:
        return {"session_id": state.get("session_id")}

    async def delete(self, state: base.ProviderState) -> None:
        return None
