"""The app against a file-based database with every logger at DEBUG, for test_secrets.py.

Adds keys through POST /api/keys, generates once with a good key and once with keys that
fail (429, invalid, 500), then once with a Vertex AI express key and once with a service account,
each behind a proxy with a password, lists the keys, and prints the API's answers as one JSON line.
Logs go to stderr (the settings' console handler), which the test captures to a file.

    secrets_app.py EMULATOR_URL OK_SECRET SPENT_SECRET INVALID_SECRET FAILING_SECRET
        (and in $VERTEX_CREDENTIALS, a JSON object: express, serviceAccount, proxy)
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nanoclone.settings")

import django

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from rest_framework.authtoken.models import Token  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

from keys.models import ApiKey  # noqa: E402

# The SDK and its HTTP stack included: the settings keep them at WARNING, an operator debugging may not.
DEBUG_LOGGERS = ["httpx", "httpx2", "httpcore", "httpcore2", "google_genai", "django", "django.db.backends", "keys"]


def main() -> None:
    emulator_url, ok_secret, *failing = sys.argv[1:]
    call_command("migrate", verbosity=0)
    for name in [*DEBUG_LOGGERS, *logging.root.manager.loggerDict]:
        logging.getLogger(name).setLevel(logging.DEBUG)
    user = get_user_model().objects.create_user("ops", password="pw-ops-123", is_staff=True)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {Token.objects.create(user=user).key}")
    answers = []

    def call(method: str, path: str, body: dict[str, object] | None = None) -> None:
        response = getattr(api, method)(path, body, format="json")
        answers.append({"call": f"{method.upper()} {path}", "status": response.status_code, "body": response.json()})

    call("post", "/api/keys", {"key": ok_secret, "label": "good", "baseUrl": emulator_url})
    call("post", "/api/generate", {"prompt": "a red kite"})
    ApiKey.objects.update(enabled=False)  # the next generation only has failing keys
    for n, secret in enumerate(failing):
        call("post", "/api/keys", {"key": secret, "label": f"failing {n}", "baseUrl": emulator_url})
    call("post", "/api/generate", {"prompt": "a blue kite"})
    vertex = json.loads(os.environ["VERTEX_CREDENTIALS"])
    proxied = {"baseUrl": emulator_url, "proxy": vertex["proxy"]}
    for kind, credential in (
        ("vertex_express", {"key": vertex["express"]}),
        ("vertex_service_account", {"serviceAccount": vertex["serviceAccount"]}),
    ):
        ApiKey.objects.update(enabled=False)  # the next generation only has this credential
        call("post", "/api/keys", {"kind": kind, "label": kind, **credential, **proxied})
        call("post", "/api/generate", {"prompt": f"a kite, via {kind}"})
    call("get", "/api/keys")
    print(json.dumps(answers), flush=True)
    sys.stderr.flush()
    # Exit without closing the database, as a killed server would: SQLite's -wal file stays for the test to read.
    os._exit(0)


if __name__ == "__main__":
    main()
