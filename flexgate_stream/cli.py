"""Flask CLI groups: ``db`` (the request-log schema) and ``demo`` (demo traffic).

Their commands live beside what they drive (``requestlog/commands.py``, ``devstack/demo_commands.py``) and are
imported only when one runs, so building the app (as the web process does) never loads the PostgreSQL driver.
"""

from __future__ import annotations

import importlib
from typing import Any

import click
from flask.cli import AppGroup

from flexgate_stream.errors import FlexgateError


class CommandError(click.ClickException):
    """A one-sentence CLI error with exit status 2."""

    exit_code = 2


class CommandGroup(AppGroup):
    """Loads its commands on use, and reports a bad argument or setting as one sentence, without the usage text."""

    def __init__(self, name: str, commands: dict[str, str], **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.lazy_commands = commands  # name -> "module:attribute"

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_commands:
            module, attribute = self.lazy_commands[cmd_name].split(":")
            command: click.Command = getattr(importlib.import_module(module), attribute)
            return command
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise CommandError(exc.format_message()) from None
        except FlexgateError as exc:
            raise CommandError(str(exc)) from None


db_cli = CommandGroup("db", {"upgrade": "flexgate_stream.requestlog.commands:db_upgrade"},
                      help="Manage the request-log schema.")
demo_cli = CommandGroup("demo", {"traffic": "flexgate_stream.devstack.demo_commands:demo_traffic",
                                 "seed": "flexgate_stream.devstack.demo_commands:demo_seed"},
                        help="Write demo traffic to the request log.")
