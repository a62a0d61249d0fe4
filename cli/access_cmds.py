"""``drfleet access enroll|review|revoke``: the operators who may approve destructive runbook
steps, each with a second factor (TOTP); see ``state.operators``."""

from __future__ import annotations

import click

from drfleet.cli import output
from drfleet.cli.common import plan_option, reports_errors, require_state, use_plan


@click.group("access")
def access_group():
    """Operators, their second factor (TOTP) and their rights."""


def _actor() -> str:
    from drfleet.tasks.runbooks import operator
    return operator()


@access_group.command("enroll")
@plan_option
@click.argument("name")
@click.option("--right", "rights", multiple=True, default=("approve",), show_default=True,
              help="A right to grant (repeat for several): approve.")
@click.option("--replace", is_flag=True, help="Give an enrolled operator a new secret (the old one stops working).")
@reports_errors
def enroll(plan_path, name, rights, replace):
    """Enrol operator NAME with a new TOTP secret. Prints, once, the otpauth:// URI to load
    into NAME's authenticator app (it holds the secret: hand it over privately)."""
    use_plan(plan_path)
    require_state()
    from drfleet.state import audit, operators

    uri = operators.enroll(name, list(rights), by=_actor(), replace=replace)
    audit.record("access.enroll", actor=_actor(), outcome="succeeded", operator=name, rights=sorted(set(rights)),
                 replaced=replace)
    output.note(f"enrolled {name} with rights {', '.join(sorted(set(rights)))}; load this URI into their "
                "authenticator (shown once):")
    output.result({"operator": name, "rights": sorted(set(rights)), "otpauth_uri": uri})


@access_group.command("review")
@plan_option
@reports_errors
def review(plan_path):
    """Every enrolled operator: rights, second factor, when and by whom enrolled, last use."""
    use_plan(plan_path)
    require_state()
    from drfleet.state import audit, operators

    found = operators.review()
    audit.record("access.review", actor=_actor(), outcome="succeeded", operators=len(found))
    output.rows(found, headers=["operator", "rights", "second factor", "enrolled", "by", "last used", "last action"],
                render=lambda o: (o["operator"], ", ".join(o["rights"]) or "-", o["second_factor"],
                                  output.timestamp(o["enrolled_at"]), o["enrolled_by"] or "-",
                                  output.timestamp(o["last_used_at"]) if o["last_used_at"] else "never",
                                  o["last_action"] or "-"),
                empty="no operators enrolled (drfleet access enroll NAME)")


@access_group.command("revoke")
@plan_option
@click.argument("name")
@reports_errors
def revoke(plan_path, name):
    """Remove operator NAME: their codes are no longer accepted."""
    use_plan(plan_path)
    require_state()
    from drfleet.state import audit, operators

    if not operators.revoke(name):
        raise click.ClickException(f"{name!r} is not an enrolled operator")
    audit.record("access.revoke", actor=_actor(), outcome="succeeded", operator=name)
    output.result({"operator": name, "status": "revoked"})


COMMANDS: list = [access_group]
