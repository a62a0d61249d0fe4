"""drfleet: a backup and disaster-recovery fleet on Celery and Redis.

Run ``drfleet COMMAND --help`` for each command.
"""

from __future__ import annotations

import importlib

import click

from drfleet.cli.data_cmds import audit_cmd, backup, backups_group, keys_group, restore, trigger, verify
from drfleet.cli.demo_cmd import demo
from drfleet.cli.fleet_cmds import down, ping, status, up
from drfleet.cli.output import add_json_option
from drfleet.cli.plan_cmds import plan_group, schedule


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option("0.1.0", prog_name="drfleet")
def main():
    """drfleet executes a DR plan: backups, copies, verification and restore drills on a
    Celery fleet pinned to regions. Start with `drfleet plan check PLAN`, then
    `drfleet schedule --plan PLAN`, then `drfleet up --plan PLAN`."""


main.add_command(plan_group)
main.add_command(schedule)
main.add_command(up)
main.add_command(down)
main.add_command(status)
main.add_command(ping)
for command in (demo, backup, trigger, backups_group, restore, verify, keys_group, audit_cmd):
    main.add_command(command)

# Each of these modules exposes COMMANDS, the click commands it adds.
COMMAND_MODULES = ("drfleet.cli.retention_cmds", "drfleet.cli.copy_cmds", "drfleet.cli.drill_cmds", "drfleet.cli.wal_cmds", "drfleet.cli.runbook_cmds",
                   "drfleet.cli.key_cmds", "drfleet.cli.alert_cmds", "drfleet.cli.access_cmds",
                   "drfleet.cli.breakglass_cmds", "drfleet.cli.storage_cmds")
for module_name in COMMAND_MODULES:
    for command in importlib.import_module(module_name).COMMANDS:
        main.add_command(command)

# --json on every command (cli.output prints JSON for scripts when it is given)
for command in main.commands.values():
    add_json_option(command)


if __name__ == "__main__":
    main()
