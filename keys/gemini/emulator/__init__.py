"""An offline Gemini image API: a real HTTP server the real `google-genai` SDK can talk to.

Serves `POST /{v1,v1beta}/models/{model}:generateContent` plus `GET .../models[/{id}]`, and
Vertex AI's paths with an OAuth token endpoint for service accounts (vertex.py),
answering with deterministic PNGs that show the prompt (or an edit of the last input
image). Misbehaviour is chosen by the API key (`emu-429-*`, `emu-429bare-*` (no details),
`emu-quota<N>-*` (N a day per model), `emu-rpm<N>-*` (N per model per `minute_seconds`),
`emu-free-*` (Pro: limit 0), a `-p<ID>-` part (keys sharing one project's quotas),
`emu-invalid-*`, `emu-denied-*`, `emu-500-*`, `emu-slow<MS>-*`) and by the prompt
(`[block]`, `[imagesafety]`, `[noimage]`). `GET /emulator/requests` shows what it
received; `DELETE` clears that log. The Batch API (`:batchGenerateContent`, `batches/...`, ending
after `batch_seconds`) and the Files API (resumable uploads, downloads) keep their state in memory.
docs/emulator.md lists every behaviour.

One module per API surface: server (HTTP, dispatch, the request log), generate
(generateContent), models_api (models.list and .get), batches (the Batch API), files (the Files
API), quotas (what a key may spend), vertex (Vertex AI's callers and tokens), errors (Google's error
shapes), render (the PNGs).

The standard library, Pillow, pybase64 and google-auth (with cryptography) only, and no Django:
tests and benchmarks import it bare.
"""

from keys.gemini.emulator.generate import generate
from keys.gemini.emulator.render import render_png
from keys.gemini.emulator.server import GeminiEmulator

__all__ = ["GeminiEmulator", "generate", "render_png"]
