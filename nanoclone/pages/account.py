"""The signed-in user's settings: what a new chat starts with, their API token (created or rotated
here, shown once) and copy-ready snippets that connect MCP clients, curl and the SDKs to this server."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST
from rest_framework.authtoken.models import Token

from conversations.pipeline import MAX_IMAGES_PER_JOB
from keys.catalogue import MODELS, resolve_model
from nanoclone.api.image_serializers import caller_base_url
from nanoclone.models import StudioDefaults
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


def _choices() -> dict[str, list[str]]:
    """What the defaults' pickers offer: every model, and every value some model has (the chosen
    model must have it: checked when saved)."""
    models = list(MODELS.values())
    return {
        "aspect_ratios": list(dict.fromkeys(ratio for model in models for ratio in model.aspect_ratios)),
        "resolutions": list(dict.fromkeys(size for model in models for size in model.resolutions)),
        "thinking_levels": list(dict.fromkeys(level for model in models for level in model.thinking_levels)),
    }


def _render(
    request: PageRequest, new_token: str = "", defaults: StudioDefaults | None = None, status: int = 200
) -> HttpResponse:
    token = Token.objects.filter(user=request.user).first()
    base_url = settings.PUBLIC_URL or caller_base_url(request)
    if defaults is None:
        defaults = StudioDefaults.objects.filter(user=request.user).first() or StudioDefaults(
            user=request.user, model=settings.DEFAULT_MODEL or next(iter(MODELS))
        )
    context = {
        "token": token,
        "new_token": new_token,
        "base_url": base_url,
        "snippets": snippets(base_url, new_token or PLACEHOLDER, request.user.get_username()),
        "defaults": defaults,
        "models": list(MODELS.values()),
        "choices": _choices(),
        "counts": range(1, MAX_IMAGES_PER_JOB + 1),
    }
    response = render(request, "account/settings.html", context, status=status)
    response["Cache-Control"] = "no-store"  # the token shown once must not come back from a cache
    return response


@login_required
@require_GET
def settings_page(request: PageRequest) -> HttpResponse:
    return _render(request)


def _check(defaults: StudioDefaults) -> str:
    """Why the chosen model can't start a chat with these settings ("" when it can)."""
    model = resolve_model(defaults.model)
    if model is None:
        return "Choose one of the models."
    lacks = [
        f"{what} {value}"
        for what, value, offered in (
            ("aspect ratio", defaults.aspect_ratio, model.aspect_ratios),
            ("size", defaults.resolution, model.resolutions),
            ("thinking level", defaults.thinking_level, model.thinking_levels),
        )
        if value and value not in offered
    ]
    if lacks:
        return f"{model.label} has no {', '.join(lacks)}: choose another, or the default."
    if not 1 <= defaults.num_images <= MAX_IMAGES_PER_JOB:
        return f"A chat makes 1 to {MAX_IMAGES_PER_JOB} images a prompt."
    return ""


@login_required
@require_POST
def save_defaults(request: PageRequest) -> HttpResponse:
    """What a new chat starts with: the last prompt's settings, or these. A choice the model lacks is
    refused with the form as it was sent."""
    count = request.POST.get("num_images", "1")
    defaults = StudioDefaults(
        user=request.user,
        use_last=request.POST.get("use_last") != "0",
        model=request.POST.get("model", ""),
        aspect_ratio=request.POST.get("aspect_ratio", ""),
        resolution=request.POST.get("resolution", ""),
        thinking_level=request.POST.get("thinking_level", ""),
        num_images=int(count) if count.isdigit() else 0,
    )
    if problem := _check(defaults):
        messages.error(request, problem)
        return _render(request, defaults=defaults, status=422)
    defaults.model = resolve_model(defaults.model).id  # type: ignore[union-attr]  # checked above
    defaults.save()
    messages.success(
        request,
        "New chats start with the settings of your last prompt."
        if defaults.use_last
        else "Saved: new chats start with these settings.",
    )
    return redirect("settings")


@login_required
@require_POST
def rotate_token(request: PageRequest) -> HttpResponse:
    """Create the user's API token, or replace it (the old one stops working at once); shown once."""
    Token.objects.filter(user=request.user).delete()
    return _render(request, Token.objects.create(user=request.user).key)
