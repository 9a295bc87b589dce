"""Hermes compatibility (Rhasspy-era subscribers), off by default.

Each result is also published to ``hermes/asr/textCaptured``; a
``hermes/asr/toggleOff`` / ``toggleOn`` for this site (or naming no site)
acts as the privacy mute.
"""

from __future__ import annotations

import json
import math
from typing import Any

from bellad.events import Result

TEXT_CAPTURED = "hermes/asr/textCaptured"
TOGGLE_OFF = "hermes/asr/toggleOff"
TOGGLE_ON = "hermes/asr/toggleOn"


def text_captured(result: Result, site: str) -> dict[str, Any]:
    """The ``textCaptured`` message; ``likelihood`` is the mean token probability."""
    return {
        "text": result.transcript.text,
        "likelihood": round(math.exp(min(0.0, result.transcript.avg_logprob)), 4),
        "seconds": round(result.utterance.duration_s, 3),
        "siteId": site,
        "sessionId": None,
        "wakewordId": None,
        "lang": result.transcript.language,
    }


def toggle_applies(payload: bytes, site: str) -> bool:
    """A toggle applies to this device when it names this site, or none."""
    try:
        message = json.loads(payload or b"{}")
    except ValueError:
        return False
    return not isinstance(message, dict) or message.get("siteId") in (None, "", site)
