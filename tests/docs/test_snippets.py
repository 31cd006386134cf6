"""Every example in the README and the docs still works.

A fenced block right after a `<!-- run -->` line runs here against a live `serve --demo` (its
offline Gemini emulator, its cluster): bash (curl), Python (google-genai, openai) and JavaScript
(@google/genai, openai on Node). It is written for `http://localhost:8000` and a token in
NANOCLONE_TOKEN, as a user would run it; `photo.png` is in its working directory.

A block right after `<!-- parse -->` configures another tool (LibreChat, Open WebUI, an MCP
client): it can't run here, so it is parsed, and every NanoClone URL path and model id in it must
be real.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.urls import URLPattern, URLResolver, get_resolver

from keys.catalogue import resolve_model
from nanoclone.mcp.transport import MCP_PATH
from tests.conftest import png_bytes
from tests.nanoclone.test_serve import Serve, serve

ROOT = Path(__file__).resolve().parents[2]
JS = Path(__file__).resolve().parent / "js"  # package.json: the SDKs the JavaScript snippets import
WRITTEN_FOR = "http://localhost:8000"
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+)\s*(?P<lang>[\w-]+)?")


@dataclass(frozen=True)
class Snippet:
    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def snippets(marker: str) -> list[Snippet]:
    """The fenced blocks that follow `marker` on the line before, in README.md and docs/."""
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines[:-1]):
            opening = FENCE.match(lines[number + 1])
            if line.strip() != marker:
                continue
            assert opening, f"{path.relative_to(ROOT)}:{number + 1}: {marker} is not followed by a fenced block"
            indent, fence = opening.group("indent"), opening.group("fence")
            body = []
            for text in lines[number + 2 :]:
                if text.strip() == fence:
                    break
                body.append(text.removeprefix(indent))
            found.append(Snippet(path, number + 2, opening.group("lang") or "", "\n".join(body) + "\n"))
    return found


RUN = snippets("<!-- run -->")
PARSE = snippets("<!-- parse -->")


def test_the_docs_have_runnable_examples_of_each_kind() -> None:
    assert {"bash", "python", "js"} <= {snippet.lang for snippet in RUN}
    readme = [snippet.lang for snippet in RUN if snippet.path.name == "README.md"]
    assert {"bash", "python"} <= set(readme)


# --- run --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nanoclone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    with serve(tmp_path_factory.mktemp("snippets-data")) as running:
        yield running


@pytest.fixture(scope="module")
def node_modules() -> Path:
    """The JavaScript SDKs, installed once from package-lock.json."""
    if not (JS / "node_modules" / ".package-lock.json").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=JS, check=True, timeout=300)
    return JS / "node_modules"


def command(snippet: Snippet, workdir: Path, node_modules: Path) -> list[str]:
    if snippet.lang == "bash":
        return ["bash", "-euo", "pipefail", "-c", snippet.code]
    if snippet.lang == "python":
        return [sys.executable, "-c", snippet.code]
    if snippet.lang == "js":
        (workdir / "node_modules").symlink_to(node_modules)  # imports resolve from the script's folder
        script = workdir / "snippet.mjs"
        script.write_text(snippet.code)
        return ["node", str(script)]
    raise AssertionError(f"{snippet.id}: no way to run a `{snippet.lang}` block")


@pytest.mark.cluster
@pytest.mark.once
@pytest.mark.parametrize("snippet", RUN, ids=[snippet.id for snippet in RUN])
def test_the_example_runs_against_a_live_nanoclone(
    snippet: Snippet, nanoclone: Serve, node_modules: Path, tmp_path: Path
) -> None:
    (tmp_path / "photo.png").write_bytes(png_bytes((96, 64)))
    code = snippet.code.replace(WRITTEN_FOR, nanoclone.url)
    env = {**os.environ, "NANOCLONE_TOKEN": nanoclone.token()}
    env.pop("DJANGO_SETTINGS_MODULE", None)  # a user's shell has none
    run = command(Snippet(snippet.path, snippet.line, snippet.lang, code), tmp_path, node_modules)
    done = subprocess.run(run, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"{snippet.id} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"


# --- parse ------------------------------------------------------------------------------------------


def literal_starts(pattern: str) -> list[str]:
    """The text every URL a route pattern matches starts with, one per alternative of a leading
    group: `(?P<version>v1beta|v1)/models` starts "v1beta/models" or "v1/models"."""
    pattern = pattern.lstrip("^")
    if group := re.match(r"\(\?P<\w+>([\w.-]+(?:\|[\w.-]+)*)\)", pattern):
        return [each + rest for each in group.group(1).split("|") for rest in literal_starts(pattern[group.end() :])]
    return [re.split(r"[<(\[\\$?*+]", pattern, maxsplit=1)[0]]


def route_prefixes() -> list[str]:
    """The literal start of every URL NanoClone serves ("/openai/v1/images/generations", "/v1beta/models"):
    Django's routes, and MCP's, which the ASGI application serves before Django sees it."""
    prefixes = [MCP_PATH]

    def walk(patterns: list[Any], prefix: str) -> None:
        for pattern in patterns:
            for start in literal_starts(str(pattern.pattern)):
                if isinstance(pattern, URLResolver):
                    walk(pattern.url_patterns, prefix + start)
                elif isinstance(pattern, URLPattern):
                    prefixes.append("/" + prefix + start)

    walk(get_resolver().url_patterns, "")
    return prefixes


def values(parsed: Any) -> Iterator[str]:
    if isinstance(parsed, dict):
        for value in parsed.values():
            yield from values(value)
    elif isinstance(parsed, list):
        for value in parsed:
            yield from values(value)
    elif parsed is not None:
        yield str(parsed)


def parsed(snippet: Snippet) -> Any:
    if snippet.lang == "json":
        return json.loads(snippet.code)
    if snippet.lang == "yaml":
        return yaml.safe_load(snippet.code)
    if snippet.lang == "toml":
        return tomllib.loads(snippet.code)
    if snippet.lang == "dotenv":
        settings = {}
        for line in snippet.code.splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                name, equals, value = line.partition("=")
                assert equals and re.fullmatch(r"[A-Z][A-Z0-9_]*", name), f"{snippet.id}: not NAME=value: {line!r}"
                settings[name] = value
        return settings
    raise AssertionError(f"{snippet.id}: no way to parse a `{snippet.lang}` block")


@pytest.mark.parametrize("snippet", PARSE, ids=[snippet.id for snippet in PARSE])
def test_the_configuration_example_parses_and_names_real_paths_and_models(snippet: Snippet) -> None:
    prefixes = route_prefixes()
    for value in values(parsed(snippet)):
        for url in re.findall(r"https?://[^\s\"']+", value):
            path = "/" + url.split("://", 1)[1].partition("/")[2]
            if "nanoclone" in url or "localhost" in url or "127.0.0.1" in url:
                assert any(route.startswith(path.rstrip("/")) for route in prefixes), f"{snippet.id}: no route {path}"
        if re.fullmatch(r"(gemini-[\w.-]+|nano-banana[\w.-]*)", value):
            assert resolve_model(value) is not None, f"{snippet.id}: unknown model {value}"
