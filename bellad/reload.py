"""What a SIGHUP reload can apply to a running daemon, and what needs a restart.

Pure logic: :func:`plan_reload` compares the running config with the new one
key by key. Decoding options, the VAD, the hallucination guard, the backlog
policy and a few service settings apply live; anything that means reloading a
model, reopening the microphone or reconnecting to the broker needs a restart
and is left at its running value (the daemon says which keys).
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bellad.config import Config
from bellad.errors import BelladError

LIVE_PREFIXES = (
    "service.room",
    "service.shutdown_timeout_s",
    "service.inference_timeout_s",
    "vad.",
    "transcribe.language",
    "transcribe.beam_size",
    "transcribe.best_of",
    "transcribe.temperature",
    "transcribe.max_new_tokens",
    "transcribe.condition_on_previous_text",
    "transcribe.timestamps",
    "transcribe.initial_prompt",
    "transcribe.hotwords",
    "transcribe.warmup",
    "transcribe.guard.",
    "sentiment.max_length",
    "pipeline.",
    "mqtt.stats_interval_s",
)


@dataclass(frozen=True)
class ReloadPlan:
    """The keys that changed, split by whether they apply live."""

    live: tuple[str, ...]
    restart: tuple[str, ...]

    @property
    def changed(self) -> bool:
        return bool(self.live or self.restart)


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out


def is_live(key: str) -> bool:
    return any(key == p or (p.endswith(".") and key.startswith(p)) for p in LIVE_PREFIXES)


def plan_reload(old: Config, new: Config) -> ReloadPlan:
    before, after = flatten(old.model_dump()), flatten(new.model_dump())
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    return ReloadPlan(
        live=tuple(k for k in changed if is_live(k)),
        restart=tuple(k for k in changed if not is_live(k)),
    )


def effective(old: Config, new: Config) -> Config:
    """The config to run with: the new live values, the old values of everything else."""
    data = old.model_dump()
    new_flat = flatten(new.model_dump())
    for key in plan_reload(old, new).live:
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = new_flat[key]
    return Config.model_validate(data)


class ReloadRecord:
    """How the last reload went, kept in the state directory for ``bellad reload``.

    systemd 252 (Debian 12) has no ``Type=notify-reload``: ``ExecReload`` would
    return before the daemon has read its new config. ``bellad reload PID`` sends
    SIGHUP and waits for this record to move on, so ``systemctl reload`` returns
    once the change is applied, and fails (saying why) when the file was refused.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0

    def record(self, ok: bool, message: str) -> None:
        self.count += 1
        data = {"pid": os.getpid(), "count": self.count, "ok": ok, "message": message}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data))
            tmp.replace(self.path)
        except OSError:
            pass  # only `bellad reload` reads it: it will time out and say so

    def read(self, pid: int) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {"count": 0}
        return data if data.get("pid") == pid else {"count": 0}

    def request(self, pid: int, timeout: float) -> tuple[bool, str]:
        """SIGHUP ``pid`` and wait for its answer: (applied, message)."""
        before = self.read(pid).get("count", 0)
        try:
            os.kill(pid, signal.SIGHUP)
        except OSError as exc:
            raise BelladError(f"cannot signal bellad (pid {pid}): {exc.strerror}") from None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answer = self.read(pid)
            if answer.get("count", 0) > before:
                return bool(answer.get("ok")), str(answer.get("message", ""))
            time.sleep(0.05)
        raise BelladError(f"bellad (pid {pid}) did not confirm the reload within {timeout:.0f} s")
