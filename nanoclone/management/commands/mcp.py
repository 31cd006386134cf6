"""`python manage.py mcp`: NanoClone's MCP tools on stdio, for agents that start their servers themselves."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from nanoclone.mcp import tools, transport


class Command(BaseCommand):
    help = (
        "Serve NanoClone's MCP tools over stdio (Claude Desktop, Claude Code, Gemini CLI, Cursor). "
        "Acts as --user, else NANOCLONE_MCP_USER, else the first superuser. Logs go to stderr."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--user", default="", help="Username the tools act as (default: NANOCLONE_MCP_USER).")

    def handle(self, *args: Any, **options: Any) -> None:
        # stdout carries the protocol and nothing else: everything we say goes to stderr.
        call_command("migrate", interactive=False, verbosity=0, stdout=sys.stderr)
        try:
            user = tools.stdio_user(options["user"])
        except LookupError as error:
            raise CommandError(str(error)) from error
        self.stderr.write(f"NanoClone MCP server on stdio, acting as {user.get_username()}.")
        transport.run_stdio(user)
        self.stderr.write("NanoClone MCP server stopped.")
