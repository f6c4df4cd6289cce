"""StartStudioSSOConfigurationRepair, for a self-hosted identity store.

On AWS the operation re-creates a studio's broken IAM Identity Center application. Here the
studio's "SSO configuration" is its memberships (of the studio and of its launch profiles)
against the installation's identity store. The repair checks every membership: those of users
that no longer exist in the identity store are removed, those recorded under another identity
store id are linked to this one, and the studio gets a new ``ssoClientId``. The studio goes
through UPDATE_IN_PROGRESS (AWS_SSO_CONFIGURATION_REPAIR_IN_PROGRESS) to READY
(AWS_SSO_CONFIGURATION_REPAIRED); its ``statusMessage`` says what was repaired. As on AWS, a
studio whose configuration is valid answers a ValidationException: there is nothing to repair.
"""

from __future__ import annotations

from opennimble.api import views
from opennimble.api.context import Context
from opennimble.api.registry import Params, Result, handler
from opennimble.domain import access, identity, ids, resources
from opennimble.protocol import validate

REPAIRING = "AWS_SSO_CONFIGURATION_REPAIR_IN_PROGRESS"


@handler
def start_studio_sso_configuration_repair(ctx: Context, params: Params) -> Result:
    studio_id = params["studioId"]
    studio = access.studio(ctx.conn, ctx.caller, studio_id)
    access.require_admin(ctx.conn, ctx.caller, studio_id, "repair the studio's SSO configuration")
    if studio["state"] not in resources.UPDATABLE:
        raise resources.conflict(studio, "repair the SSO configuration of")
    repair = identity.check_memberships(ctx.conn, studio_id)
    if not repair:
        raise validate.exception(
            [
                (
                    "studioId",
                    f"Studio {studio_id} has a valid SSO configuration: every member is a user "
                    "of this installation's identity store, so there is nothing to repair",
                )
            ]
        )
    identity.repair_memberships(ctx.conn, repair)
    message = "SSO configuration repair: " + repair.report()
    row = resources.begin_update(
        ctx.conn,
        studio,
        {"ssoClientId": ids.resource_id()},
        ctx.caller.user_id,
        ctx.now,
        status=(REPAIRING, message),
    )
    ctx.install.wake_reconciler()
    return {"studio": views.resource(ctx, row)}
