from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from rest_framework.authtoken.models import Token


class Command(BaseCommand):
    help = "Create or rotate a user's API token; the token is printed alone on the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            user = get_user_model().objects.get(username=options["username"])
        except get_user_model().DoesNotExist as error:
            raise CommandError(f"No user named {options['username']!r}.") from error
        rotated = Token.objects.filter(user=user).delete()[0] > 0
        token = Token.objects.create(user=user)
        self.stdout.write(f"{'Rotated' if rotated else 'Created'} the API token of {user.username}:")
        self.stdout.write(token.key)
