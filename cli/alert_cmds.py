"""``drfleet alerts serve|config``: the Alertmanager webhook receiver that starts runbooks."""

from __future__ import annotations

import logging

import click
import yaml

from drfleet.cli.common import plan_option, reports_errors, use_plan


@click.group("alerts")
def alerts_group():
    """Receive Alertmanager's alerts: start the matching runbook, notify the rest."""


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter("give HOST:PORT, e.g. 127.0.0.1:9097", param_hint="--listen")
    return host.strip("[]"), int(port)


@alerts_group.command("serve")
@plan_option
@click.option("--listen", default="127.0.0.1:9097", show_default=True, help="HOST:PORT to listen on.")
@click.option("--token-file", type=click.Path(exists=True, dir_okay=False),
              help="File holding the bearer token Alertmanager sends (mode 0600).")
@click.option("--basic-auth-file", type=click.Path(exists=True, dir_okay=False),
              help="File holding user:password for HTTP basic auth (mode 0600).")
@reports_errors
def serve(plan_path, listen, token_file, basic_auth_file):
    """Serve POST /alerts until interrupted. ServiceDown starts service-failure (a restart
    first), RegionServicesDown region-failure, DatabaseUnreachable database-failure (its
    promotion waits for approval); other alerts become notifications. Unauthenticated,
    malformed and unknown-target payloads are refused and logged; nothing is started."""
    plan = use_plan(plan_path)
    from drfleet.fleet.alert_receiver import Credentials, fleet_handler, make_server

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = make_server(_address(listen), Credentials.from_files(token_file, basic_auth_file), fleet_handler(plan))
    host, port = server.server_address[:2]
    click.echo(f"drfleet alerts: listening on http://{host}:{port}/alerts for plan {plan.name!r}", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@alerts_group.command("config")
@click.option("--receiver-url", required=True, help="Where `drfleet alerts serve` listens, e.g. http://drfleet:9097/alerts.")
@click.option("--credentials-file", required=True, help="Path (as Alertmanager sees it) of the bearer token file.")
def config(receiver_url, credentials_file):
    """Print an alertmanager.yml that routes every alert to the receiver."""
    from drfleet.fleet.alert_receiver import alertmanager_config

    click.echo(yaml.safe_dump(alertmanager_config(receiver_url, credentials_file=credentials_file), sort_keys=False))


COMMANDS: list = [alerts_group]
