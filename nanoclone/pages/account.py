"""The signed-in user's settings: their API token (created or rotated here, shown once) and
copy-ready snippets that connect MCP clients, curl and the SDKs to this server."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST
from rest_framework.authtoken.models import Token

from nanoclone.api.image_serializers import caller_base_url
from nanoclone.pages import PageRequest

PLACEHOLDER = "<your token>"


def _python() -> str:
    """The interpreter an MCP client should start: the checkout's .venv when there is one."""
    venv = Path(settings.BASE_DIR) / ".venv" / "bin" / "python"
    return str(venv if venv.exists() else Path(sys.executable))


def snippets(base_url: str, token: str, username: str) -> list[dict[str, str]]:
    """What to paste where, with this server's addresses (and the token, right after it was made)."""
    manage = str(Path(settings.BASE_DIR) / "manage.py")
    stdio = {
        "mcpServers": {
            "nanoclone": {
                "command": _python(),
                "args": [manage, "mcp"],
                "env": {
                    "NANOCLONE_DATA_DIR": str(settings.DATA_DIR),
                    "NANOCLONE_MCP_USER": username,
                    "NANOCLONE_PUBLIC_URL": base_url,
                },
            }
        }
    }
    remote = {
        "mcpServers": {
            "nanoclone": {
                "command": "npx",
                "args": ["-y", "mcp-remote", f"{base_url}/mcp", "--header", "Authorization:${NANOCLONE_AUTH}"],
                "env": {"NANOCLONE_AUTH": f"Bearer {token}"},
            }
        }
    }
    return [
        {
            "id": "claude-desktop",
            "title": "Claude Desktop (claude_desktop_config.json, stdio: runs on this machine)",
            "code": json.dumps(stdio, indent=2),
        },
        {
            "id": "claude-desktop-http",
            "title": "Claude Desktop over HTTP (mcp-remote, needs Node.js)",
            "code": json.dumps(remote, indent=2),
        },
        {
            "id": "claude-code",
            "title": "Claude Code",
            "code": f"claude mcp add --transport http nanoclone {base_url}/mcp"
            f' --header "Authorization: Bearer {token}"\n'
            f"# or over stdio, on this machine\nclaude mcp add nanoclone -- {_python()} {manage} mcp",
        },
        {
            "id": "curl",
            "title": "curl (the native API)",
            "code": f'curl -X POST {base_url}/api/generate -H "Authorization: Bearer {token}" \\\n'
            f'  -H "Content-Type: application/json" -d \'{{"prompt": "A lighthouse at dusk"}}\'',
        },
        {
            "id": "python-genai",
            "title": "Python, google-genai (Gemini's API)",
            "code": "from google import genai\n\n"
            f'client = genai.Client(api_key="{token}", http_options={{"base_url": "{base_url}"}})\n'
            'answer = client.models.generate_content(model="gemini-nano-banana-2.1", contents="A red fox in the snow")',
        },
        {
            "id": "python-openai",
            "title": "Python, openai (OpenAI's Images API)",
            "code": "from openai import OpenAI\n\n"
            f'client = OpenAI(api_key="{token}", base_url="{base_url}/openai/v1")\n'
            'result = client.images.generate(model="gemini-nano-banana-2.1", prompt="A lighthouse at dusk")',
        },
        {
            "id": "js-genai",
            "title": "JavaScript, @google/genai",
            "code": 'import { GoogleGenAI } from "@google/genai";\n\n'
            f'const ai = new GoogleGenAI({{ apiKey: "{token}", httpOptions: {{ baseUrl: "{base_url}" }} }});',
        },
    ]


def _render(request: PageRequest, new_token: str = "") -> HttpResponse:
    token = Token.objects.filter(user=request.user).first()
    base_url = settings.PUBLIC_URL or caller_base_url(request)
    context = {
        "token": token,
        "new_token": new_token,
        "base_url": base_url,
        "snippets": snippets(base_url, new_token or PLACEHOLDER, request.user.get_username()),
    }
    response = render(request, "account/settings.html", context)
    response["Cache-Control"] = "no-store"  # the token shown once must not come back from a cache
    return response


@login_required
@require_GET
def settings_page(request: PageRequest) -> HttpResponse:
    return _render(request)


@login_required
@require_POST
def rotate_token(request: PageRequest) -> HttpResponse:
    """Create the user's API token, or replace it (the old one stops working at once); shown once."""
    Token.objects.filter(user=request.user).delete()
    return _render(request, Token.objects.create(user=request.user).key)
