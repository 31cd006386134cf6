"""What the server-rendered pages share: the type of the requests their views receive."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails


class PageRequest(HttpRequest):
    """A request to a login-required page: a signed-in user, annotated by django-htmx's middleware."""

    user: User
    htmx: HtmxDetails
