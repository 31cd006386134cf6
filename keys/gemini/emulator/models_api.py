"""models.list and models.get: the catalogue's image models, as Gemini describes a model."""

from __future__ import annotations

from keys.catalogue import ImageModel
from keys.gemini.emulator.errors import JSON


def extra_model_resource(name: str) -> JSON:
    return {
        "name": f"models/{name}",
        "version": "001",
        "displayName": name,
        "description": f"{name} (listed by the emulator, unknown to NanoClone's catalogue)",
        "supportedGenerationMethods": ["generateContent"],
    }


def model_resource(model: ImageModel) -> JSON:
    return {
        "name": f"models/{model.id}",
        "version": "001",
        "displayName": model.label,
        "description": f"{model.label}: {model.status} (served by the offline Gemini emulator)",
        "inputTokenLimit": 131072,
        "outputTokenLimit": 32768,
        "supportedGenerationMethods": ["generateContent", "countTokens"],
    }
