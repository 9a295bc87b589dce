"""The encoder's input: faster-whisper's padded 30-second window, or trimmed.

Kept apart from :mod:`bellad.transcribe` so that a process may use the model
class without bellad's config (the benchmark's memory floor,
:mod:`bellad.benchmark.floor`).
"""

from __future__ import annotations

import math
from typing import Any

from bellad.events import SAMPLE_RATE
from bellad.lazyimport import defer
from bellad.memory import map_new_blocks

#: mel frames per second of audio (faster-whisper's hop of 160 samples at 16 kHz)
FRAMES_PER_SECOND = 100
#: the padded window: 30 s of mel frames
WINDOW_FRAMES = 30 * FRAMES_PER_SECOND


def trimmed_frames(samples: int) -> int:
    """Mel frames the encoder sees in trimmed mode: the audio's, in whole seconds.

    Rounding up to a second keeps a little silence after the last word, as the
    padded window does, and is a multiple of the encoder's stride of two frames.
    At least one second, at most the 30-second window.
    """
    seconds = max(1, math.ceil(samples / SAMPLE_RATE))
    return min(WINDOW_FRAMES, seconds * FRAMES_PER_SECOND)


def trimmable_model_class() -> type:
    """faster-whisper's model with an encoder input that can be cut short.

    faster-whisper pads each window's features to 30 s before calling
    ``encode``; this subclass cuts them to ``encode_frames`` when that is set,
    and is faster-whisper's model unchanged when it is None. PyAV, which
    faster-whisper imports for decoding files, stays unloaded until a file is
    decoded (:mod:`bellad.lazyimport`).
    """
    defer("av")
    from faster_whisper import WhisperModel

    class TrimmableWhisperModel(WhisperModel):
        encode_frames: int | None = None

        def encode(self, features: Any) -> Any:
            map_new_blocks(False)  # the features are made: back to the held heap
            frames = self.encode_frames
            if frames is not None and features.shape[-1] > frames:
                features = features[..., :frames]
            return super().encode(features)

    return TrimmableWhisperModel
