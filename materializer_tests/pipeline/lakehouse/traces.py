"""Test traces for the lakehouse runs: three days × two models, five users."""

from __future__ import annotations

from materializer_assets.lib.slugs import model_slug

QWEN = "Qwen/Qwen3-Coder-4B-Instruct"
MODELS = ("glm-5-32b", QWEN)
SLUGS = tuple(model_slug(m) for m in MODELS)
DAYS = ("2026-04-16", "2026-04-17", "2026-04-18")
# granted, granted, refused in the trace, granted until the registry revokes, granted until listed
USERS = {"alice": True, "bob": True, "carol": "false", "mallory": True, "eve": True}


def chat(trace_id: str, user: str, consent, model: str, day: str) -> dict:
    return {
        "id": trace_id,
        "timestamp": f"{day}T10:00:00Z",
        "model": model,
        "user_id": user,
        "consent": consent,
        "messages": [
            {"role": "user", "content": f"question from {user}"},
            {"role": "assistant", "content": f"answer for {user}"},
        ],
    }

