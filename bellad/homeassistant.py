"""Home Assistant MQTT discovery: one retained device message for the whole device.

Published to ``<discovery prefix>/device/bellad_<site>/config`` on every
connection and again whenever Home Assistant announces itself (its birth
message ``online`` on ``<discovery prefix>/status``). Every entity is tied to
the availability topic. The transcript is an *event* entity, never a sensor
state: Home Assistant cuts states at 255 characters.
"""

from __future__ import annotations

from typing import Any

from bellad.config import HomeAssistantConfig
from bellad.contract import Topics

TRANSCRIPT_EVENT = (
    "{{ {'event_type': 'transcript', 'text': value_json.text, 'id': value_json.id,"
    " 'language': value_json.language,"
    " 'sentiment': value_json.sentiment.label if value_json.sentiment else none,"
    " 'valence': value_json.sentiment.valence if value_json.sentiment else none} | to_json }}"
)


def device_id(site: str) -> str:
    return f"bellad_{site}"


def discovery_topic(cfg: HomeAssistantConfig, site: str) -> str:
    return f"{cfg.prefix}/device/{device_id(site)}/config"


def _diagnostic(uid: str, key: str, name: str, template: str, **extra: Any) -> dict[str, Any]:
    return {
        "platform": "sensor",
        "name": name,
        "unique_id": f"{uid}_{key}",
        "value_template": template,
        "entity_category": "diagnostic",
        **extra,
    }


def discovery_payload(
    topics: Topics, site: str, room: str, version: str, stats: bool
) -> dict[str, Any]:
    """The device discovery message (full key names, no abbreviations)."""
    uid = device_id(site)
    components: dict[str, dict[str, Any]] = {
        f"{uid}_speech": {
            "platform": "binary_sensor",
            "name": "Speech",
            "unique_id": f"{uid}_speech",
            "state_topic": topics.speech,
            "payload_on": "ON",
            "payload_off": "OFF",
            "device_class": "sound",
        },
        f"{uid}_transcript": {
            "platform": "event",
            "name": "Transcript",
            "unique_id": f"{uid}_transcript",
            "state_topic": topics.transcript,
            "event_types": ["transcript"],
            "value_template": TRANSCRIPT_EVENT,
            "icon": "mdi:text-recognition",
        },
        f"{uid}_sentiment": {
            "platform": "sensor",
            "name": "Sentiment",
            "unique_id": f"{uid}_sentiment",
            "state_topic": topics.transcript,
            "value_template": "{{ value_json.sentiment.valence if value_json.sentiment else 0 }}",
            "json_attributes_topic": topics.transcript,
            "json_attributes_template": "{{ (value_json.sentiment or {}) | to_json }}",
            "state_class": "measurement",
            "suggested_display_precision": 2,
            "icon": "mdi:emoticon-outline",
        },
        f"{uid}_listening": {
            "platform": "switch",
            "name": "Listening",
            "unique_id": f"{uid}_listening",
            "command_topic": topics.listening_set,
            "state_topic": topics.state,
            "value_template": "{{ 'ON' if value_json.listening else 'OFF' }}",
            "payload_on": "ON",
            "payload_off": "OFF",
            "state_on": "ON",
            "state_off": "OFF",
            "icon": "mdi:microphone",
        },
    }
    if stats:
        diag = [
            _diagnostic(
                uid,
                "utterances",
                "Utterances",
                "{{ value_json.utterances }}",
                state_class="total_increasing",
            ),
            _diagnostic(
                uid,
                "latency",
                "Latency p95",
                "{{ value_json.latency_ms.p95 }}",
                unit_of_measurement="ms",
                device_class="duration",
            ),
            _diagnostic(uid, "rtf", "Real-time factor", "{{ value_json.rtf.median }}"),
            _diagnostic(
                uid,
                "outbox",
                "Outbox depth",
                "{{ value_json.outbox.depth }}",
                state_class="measurement",
            ),
            _diagnostic(
                uid,
                "cpu",
                "CPU",
                "{{ value_json.process.cpu_percent }}",
                unit_of_measurement="%",
                state_class="measurement",
            ),
            _diagnostic(
                uid,
                "memory",
                "Memory",
                "{{ value_json.process.rss_mb }}",
                unit_of_measurement="MB",
                state_class="measurement",
            ),
            _diagnostic(
                uid,
                "temperature",
                "SoC temperature",
                "{{ value_json.soc_temp_c }}",
                unit_of_measurement="°C",
                device_class="temperature",
                state_class="measurement",
            ),
        ]
        for entity in diag:
            entity["state_topic"] = topics.stats
            components[entity["unique_id"]] = entity
    return {
        "device": {
            "identifiers": [uid],
            "name": f"bellad {room or site}",
            "manufacturer": "bellad",
            "model": "bellad voice daemon",
            "sw_version": version,
            **({"suggested_area": room} if room else {}),
        },
        "origin": {"name": "bellad", "sw_version": version},
        "availability": [
            {
                "topic": topics.availability,
                "payload_available": "online",
                "payload_not_available": "offline",
            }
        ],
        "components": components,
        "qos": 1,
    }
