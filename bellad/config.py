"""Configuration: one validated section per stage, loaded from TOML.

The file mirrors the modules: ``[audio]`` configures :mod:`bellad.audio` and
:mod:`bellad.microphone`, ``[vad]`` :mod:`bellad.vad`, ``[transcribe]``
:mod:`bellad.transcribe`, and so on. Every section rejects unknown keys, checks
ranges, and states cross-field rules as validators. :func:`load_config` turns
every problem into one :class:`ConfigError` listing each with its key path,
the offending value and the reason.
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bellad.errors import ConfigError

SYSTEM_CONFIG = Path("/etc/bellad/bellad.toml")
CHECKOUT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "bellad.toml"

SITE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
WHISPER_LANGUAGES = frozenset(
    [
        "af",
        "am",
        "ar",
        "as",
        "az",
        "ba",
        "be",
        "bg",
        "bn",
        "bo",
        "br",
        "bs",
        "ca",
        "cs",
        "cy",
        "da",
        "de",
        "el",
        "en",
        "es",
        "et",
        "eu",
        "fa",
        "fi",
        "fo",
        "fr",
        "gl",
        "gu",
        "ha",
        "haw",
        "he",
        "hi",
        "hr",
        "ht",
        "hu",
        "hy",
        "id",
        "is",
        "it",
        "ja",
        "jw",
        "ka",
        "kk",
        "km",
        "kn",
        "ko",
        "la",
        "lb",
        "ln",
        "lo",
        "lt",
        "lv",
        "mg",
        "mi",
        "mk",
        "ml",
        "mn",
        "mr",
        "ms",
        "mt",
        "my",
        "ne",
        "nl",
        "nn",
        "no",
        "oc",
        "pa",
        "pl",
        "ps",
        "pt",
        "ro",
        "ru",
        "sa",
        "sd",
        "si",
        "sk",
        "sl",
        "sn",
        "so",
        "sq",
        "sr",
        "su",
        "sv",
        "sw",
        "ta",
        "te",
        "tg",
        "th",
        "tk",
        "tl",
        "tr",
        "tt",
        "uk",
        "ur",
        "uz",
        "vi",
        "yi",
        "yo",
        "yue",
        "zh",
    ]
)
DEFAULT_PHANTOMS = (
    "thank you",
    "thanks for watching",
    "thank you for watching",
    "thank you so much for watching",
    "please subscribe",
    "subscribe to my channel",
    "like and subscribe",
    "see you next time",
    "see you in the next video",
    "bye",
    "you",
    "subtitles by the amara.org community",
)


def default_site() -> str:
    """The hostname's first label, reduced to characters a site id may hold."""
    name = socket.gethostname().split(".")[0]
    name = re.sub(r"[^A-Za-z0-9_-]", "-", name).strip("-")[:64]
    return name or "bellad"


SYSTEM_STATE = Path("/var/lib/bellad")


def default_state_dir(system: bool = False) -> Path:
    """``$STATE_DIRECTORY`` under systemd; the service's ``/var/lib/bellad`` for the
    system config (so commands run by hand find the service's models); else the XDG
    state folder."""
    if os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    if system:
        return SYSTEM_STATE
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "bellad"


class Section(BaseModel):
    """Base of every section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


# TOML already types its values: a string or a boolean where a number belongs is an error.
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]
Bool = Annotated[bool, Strict()]
Str = Annotated[str, Strict()]
Ms = Annotated[int, Strict(), Field(ge=10, le=60_000)]


class ServiceConfig(Section):
    """``[service]``: identity and lifecycle of the daemon."""

    site: Str = Field(default_factory=default_site, description="site id of this device")
    room: Str = Field("", max_length=64, description="human-readable room name")
    state_dir: Path = Field(default_factory=default_state_dir)

    @model_validator(mode="before")
    @classmethod
    def _system_state(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, dict) and "state_dir" not in data and info.context:
            return {
                **data,
                "state_dir": default_state_dir(system=info.context.get("system", False)),
            }
        return data

    shutdown_timeout_s: Float = Field(20.0, gt=0, le=600)
    inference_timeout_s: Float = Field(120.0, gt=0, le=3600)
    hold_memory: Bool = Field(
        True, description="keep a transcription's working memory for the next (bellad.memory)"
    )

    @field_validator("site")
    @classmethod
    def _site_chars(cls, value: str) -> str:
        if not SITE_PATTERN.match(value):
            raise ValueError("a site id holds 1-64 letters, digits, '_' or '-' (no '/', '+', '#')")
        return value


class AudioConfig(Section):
    """``[audio]``: where audio comes from (see ``bellad.audio``)."""

    source: Literal["microphone", "file"] = "microphone"
    device: int | str | None = Field(None, description="index or name substring")
    rate: Int | None = Field(None, ge=8000, le=192_000, description="capture rate")
    channels: Int = Field(1, ge=1, le=32)
    block_ms: Int = Field(30, ge=10, le=200)
    queue_s: Float = Field(10.0, gt=0, le=120, description="capture buffer")
    idle_batch_ms: Int = Field(
        120, ge=0, le=1000, description="while nobody speaks, blocks reach the VAD in batches"
    )
    quiet_batch_ms: Int = Field(
        480,
        ge=0,
        le=2000,
        description="while nobody speaks and the room is quiet (peaks below -36 dBFS), "
        "blocks reach the VAD in these larger batches; louder audio at once",
    )
    stall_timeout_s: Float = Field(5.0, gt=0, le=300)
    reopen_min_s: Float = Field(0.5, gt=0, le=60)
    reopen_max_s: Float = Field(30.0, gt=0, le=3600)
    file: Path | None = None
    realtime: Bool = True
    loop: Bool = False

    @field_validator("device", mode="before")
    @classmethod
    def _device_type(cls, value: object) -> object:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | str)):
            raise ValueError("a device is an index (a number) or a part of its name (a string)")
        return value

    @field_validator("device")
    @classmethod
    def _device(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and value < 0:
            raise ValueError("a device index is 0 or more")
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @model_validator(mode="after")
    def _rules(self) -> AudioConfig:
        if self.source == "file" and self.file is None:
            raise ValueError("source = 'file' needs audio.file")
        if self.reopen_min_s > self.reopen_max_s:
            raise ValueError("reopen_min_s must not exceed reopen_max_s")
        return self


class VadConfig(Section):
    """``[vad]``: speech segmentation (see ``bellad.vad``)."""

    aggressiveness: Int = Field(2, ge=0, le=3)
    frame_ms: Int = 30
    start_window_ms: Ms = 240
    start_ratio: Float = Field(0.6, gt=0, le=1)
    hangover_ms: Ms = 600
    end_ratio: Float = Field(0.15, ge=0, lt=1)
    pre_roll_ms: Int = Field(400, ge=0, le=5000)
    min_speech_ms: Int = Field(250, ge=0, le=10_000)
    max_utterance_s: Float = Field(20.0, ge=2, le=30)
    cut_search_ms: Ms = 2000

    @field_validator("frame_ms")
    @classmethod
    def _frame(cls, value: int) -> int:
        if value not in (10, 20, 30):
            raise ValueError("webrtcvad takes 10, 20 or 30 ms frames only")
        return value

    @model_validator(mode="after")
    def _rules(self) -> VadConfig:
        for key in ("start_window_ms", "hangover_ms", "cut_search_ms"):
            if getattr(self, key) < self.frame_ms:
                raise ValueError(f"{key} must be at least frame_ms ({self.frame_ms})")
        if self.cut_search_ms >= self.max_utterance_s * 1000 / 2:
            raise ValueError("cut_search_ms must be under half of max_utterance_s")
        if self.min_speech_ms >= self.max_utterance_s * 1000:
            raise ValueError("min_speech_ms must be under max_utterance_s")
        return self


class GuardConfig(Section):
    """``[transcribe.guard]``: what counts as a hallucination."""

    enabled: Bool = True
    action: Literal["drop", "flag"] = "drop"
    no_speech_threshold: Float = Field(0.6, ge=0, le=1)
    log_prob_threshold: Float = Field(-1.0, le=0)
    compression_ratio_threshold: Float = Field(2.4, gt=0)
    phantom_phrases: tuple[Str, ...] = DEFAULT_PHANTOMS
    phantom_max_dbfs: Float = Field(-35.0, le=0, description="phantoms count below this level")


class TranscribeConfig(Section):
    """``[transcribe]``: Whisper through faster-whisper (see ``bellad.transcribe``)."""

    model: Str = Field("tiny.en", min_length=1, description="installed name or folder")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compute_type: Literal[
        "auto", "int8", "int8_float16", "int8_float32", "int8_bfloat16", "float16", "float32"
    ] = "auto"
    threads: Int = Field(0, ge=0, le=64, description="0: one per core, at most 4")
    language: Str = Field("en", description="a Whisper language code, or 'auto'")
    beam_size: Int = Field(1, ge=1, le=10)
    best_of: Int = Field(1, ge=1, le=10)
    temperature: tuple[Float, ...] = Field((0.0,), min_length=1, max_length=6)
    max_new_tokens: Int = Field(128, ge=1, le=440)
    condition_on_previous_text: Bool = False
    timestamps: Bool = False
    initial_prompt: Str | None = None
    hotwords: Str | None = None
    warmup: Bool = True
    encode: Literal["padded", "trimmed"] = Field(
        "padded", description="encoder input: the 30 s window, or the utterance's length"
    )
    guard: GuardConfig = GuardConfig()

    @field_validator("language")
    @classmethod
    def _language(cls, value: str) -> str:
        if value != "auto" and value not in WHISPER_LANGUAGES:
            raise ValueError("not a Whisper language code (e.g. 'en', 'de') nor 'auto'")
        return value

    @field_validator("temperature")
    @classmethod
    def _temperature(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(t < 0 or t > 1 for t in value) or list(value) != sorted(value):
            raise ValueError("temperatures are rising values between 0 and 1")
        return value

    @model_validator(mode="after")
    def _rules(self) -> TranscribeConfig:
        if self.best_of > 1 and self.temperature == (0.0,):
            raise ValueError("best_of > 1 only matters with a temperature above 0")
        if self.model.endswith(".en") and self.language not in ("en", "auto"):
            raise ValueError(f"model {self.model!r} is English-only: language must be 'en'")
        if self.device == "cpu" and self.compute_type in ("int8_float16", "float16"):
            raise ValueError(f"compute_type {self.compute_type!r} needs device 'cuda'")
        return self


class SentimentConfig(Section):
    """``[sentiment]``: an ONNX sequence classifier (see ``bellad.sentiment``)."""

    enabled: Bool = True
    model: Str = Field("builtin", min_length=1, description="'builtin', a name or a folder")
    threads: Int = Field(1, ge=1, le=16)
    max_length: Int = Field(128, ge=8, le=512)


class PipelineConfig(Section):
    """``[pipeline]``: queues between the stages (see ``bellad.pipeline``)."""

    max_backlog: Int = Field(8, ge=1, le=1000, description="utterances awaiting transcription")
    overflow: Literal["drop_oldest", "drop_newest"] = "drop_oldest"


class OutputConfig(Section):
    """``[output]``: JSON lines on stdout (see ``bellad.sinks``)."""

    stdout: Literal["auto", "on", "off"] = "auto"


class TlsConfig(Section):
    """``[mqtt.tls]``: TLS to the broker, with hostname verification on."""

    enabled: Bool = False
    ca_file: Path | None = Field(None, description="CA bundle; unset: the system's CAs")
    cert_file: Path | None = Field(None, description="client certificate (optional)")
    key_file: Path | None = Field(None, description="client key (with cert_file)")
    verify_hostname: Bool = True

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class OutboxConfig(Section):
    """``[mqtt.outbox]``: the durable queue of results (see ``bellad.outbox``)."""

    max_messages: Int = Field(10_000, ge=10, le=1_000_000)
    max_age_h: Float = Field(168.0, gt=0, le=24 * 365)


class HomeAssistantConfig(Section):
    """``[mqtt.homeassistant]``: MQTT discovery (see ``bellad.homeassistant``)."""

    discovery: Bool = True
    prefix: Str = Field("homeassistant", min_length=1, max_length=64)


class HermesConfig(Section):
    """``[mqtt.hermes]``: Rhasspy-era Hermes topics (see ``bellad.hermes``)."""

    enabled: Bool = False


class MqttConfig(Section):
    """``[mqtt]``: the broker connection and topics (see ``bellad.mqtt``)."""

    enabled: Bool = True
    host: Str = Field("localhost", min_length=1)
    port: Int | None = Field(None, ge=1, le=65535, description="default 1883, 8883 with TLS")
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    prefix: Str = Field("bellad", min_length=1, max_length=64)
    client_id: Str = Field("", max_length=64, description="default: bellad-<site>")
    keepalive_s: Int = Field(30, ge=5, le=3600)
    username: Str = ""
    password_file: Path | None = None
    password_credential: Str = Field("mqtt-password", min_length=1)
    reconnect_min_s: Float = Field(1.0, gt=0, le=60)
    reconnect_max_s: Float = Field(60.0, gt=0, le=3600)
    stats_interval_s: Float = Field(60.0, ge=0, le=86_400, description="0: no stats")
    flush_timeout_s: Float = Field(5.0, ge=0, le=120)
    tls: TlsConfig = TlsConfig()
    outbox: OutboxConfig = OutboxConfig()
    homeassistant: HomeAssistantConfig = HomeAssistantConfig()
    hermes: HermesConfig = HermesConfig()

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if any(c in value for c in "+#") or value.startswith("/") or value.endswith("/"):
            raise ValueError("a topic prefix has no '+' or '#' and no leading or trailing '/'")
        return value

    @model_validator(mode="after")
    def _rules(self) -> MqttConfig:
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s must not exceed reconnect_max_s")
        return self

    @property
    def effective_port(self) -> int:
        return self.port or (8883 if self.tls.enabled else 1883)


class ModelsConfig(Section):
    """``[models]``: where installed models live (see ``bellad.modelstore``)."""

    dir: Path | None = Field(None, description="default: <service.state_dir>/models")


class Config(Section):
    """The whole configuration file."""

    service: ServiceConfig = Field(default_factory=ServiceConfig)

    @model_validator(mode="before")
    @classmethod
    def _service_section(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, dict) and "service" not in data and info.context:
            return {**data, "service": {}}  # so its defaults see the validation context
        return data

    audio: AudioConfig = AudioConfig()
    vad: VadConfig = VadConfig()
    transcribe: TranscribeConfig = TranscribeConfig()
    sentiment: SentimentConfig = SentimentConfig()
    pipeline: PipelineConfig = PipelineConfig()
    output: OutputConfig = OutputConfig()
    mqtt: MqttConfig = MqttConfig()
    models: ModelsConfig = ModelsConfig()

    @property
    def models_dir(self) -> Path:
        return self.models.dir or self.service.state_dir / "models"


def default_config_path() -> Path:
    """``/etc/bellad/bellad.toml`` if it exists, else the checkout's default file."""
    return SYSTEM_CONFIG if SYSTEM_CONFIG.exists() else CHECKOUT_CONFIG


def load_config(path: Path) -> Config:
    """Read and validate ``path``; raise :class:`ConfigError` listing every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read it: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path}: not UTF-8 text ({exc.reason})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: not valid TOML: {exc}") from None
    return parse_config(data, source=str(path), system=path == SYSTEM_CONFIG)


def parse_config(data: dict[str, Any], source: str = "<config>", system: bool = False) -> Config:
    """Validate already-parsed TOML data; ``system``: it is the service's config file."""
    try:
        return Config.model_validate(data, context={"system": system})
    except ValidationError as exc:
        problems = [format_problem(err, data) for err in exc.errors()]
        lines = "\n".join(f"  {p}" for p in problems)
        noun = "problem" if len(problems) == 1 else "problems"
        raise ConfigError(f"config file {source}: {len(problems)} {noun}:\n{lines}") from None


def format_problem(err: Any, data: dict[str, Any]) -> str:
    """One line: ``key.path = value: reason``."""
    loc = [str(part) for part in err["loc"]]
    key = ".".join(loc) or "(top level)"
    reason = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return f"{key}: unknown key (check its spelling and section)"
    if err["type"] == "missing":
        return f"{key}: required key is missing"
    value = _lookup(data, err["loc"])
    if not loc:
        return reason
    shown = "" if value is _MISSING or isinstance(value, dict) else f" = {_show(value)}"
    return f"{key}{shown}: {reason}"


_MISSING = object()


def _lookup(data: Any, loc: tuple[Any, ...]) -> Any:
    for part in loc:
        if (isinstance(data, dict) and part in data) or (
            isinstance(data, list | tuple) and isinstance(part, int) and part < len(data)
        ):
            data = data[part]
        else:
            return _MISSING
    return data


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
