"""bellad.service under a real systemd 252: start, status, reload, watchdog, stop, journal.

One container for the module (tests/support/container.py boots the cached
Debian bookworm with systemd-nspawn). The checkout is bind-mounted read-only
at /src and installed with ``scripts/install.sh --enable`` (``make install``
without ``--now``: the models must be imported before the first start). Then,
as an administrator would on a device:

* the generated Whisper test model (tiny architecture, random weights) is
  imported with ``bellad models import``, run as the user ``bellad``, into
  the unit's state directory ``/var/lib/bellad/models``; sentiment is the
  built-in model, which the install put inside the package;
* ``/etc/bellad/bellad.toml`` points at them and at a file source: real
  speech (the pocketsphinx "cards" clips with silence between) looped in
  real time from ``/etc/bellad/speech.wav``, since the container has no
  sound card; MQTT is off (it has its own tests);
* a drop-in (never an edit of the shipped unit) shortens ``WatchdogSec=`` to
  4 s, so that the whole module also runs under a tight watchdog.

The tests run in file order on the same service: each one that needs bellad
running starts it if an earlier one left it down.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from bellad.testmodels import ensure_test_models
from tests.conftest import data_dir
from tests.support.container import Container, base_image
from tests.support.speech import cards, join_clips, write_wav

# install.sh builds a venv with the whole inference stack: minutes without a pip cache
pytestmark = [pytest.mark.system, pytest.mark.timeout(1200)]

REPO = Path(__file__).resolve().parents[2]
UNIT = "bellad.service"
CONFIG = "/etc/bellad/bellad.toml"
SPEECH = "/etc/bellad/speech.wav"
MODELS_DIR = "/var/lib/bellad/models"
STAGE = "/srv/bellad-test"  # readable by everyone: what the user bellad imports from
DROP_IN = f"/etc/systemd/system/{UNIT}.d/test.conf"
SITE = "systemtest"
WHISPER = "whisper-test"
WATCHDOG_S = 4
TIMEOUT_STOP_S = 30  # TimeoutStopSec= of the shipped unit
#: systemd's catalog ids of "Started <unit>" and "Stopped <unit>" (the start or stop job finished)
UNIT_STARTED_ID = "39f53479d3a045ac8e11786248231fbf"
UNIT_STOPPED_ID = "9d1aaa27d60140bd96365438aad20286"
STATUS_LINE = re.compile(r"^listening; (\d+) utterances(, last \d+\.\d\d s)?$")


def service_config(**sections: dict[str, Any]) -> dict[str, Any]:
    """The test's bellad.toml; ``sections`` replace keys in the base sections."""
    config: dict[str, Any] = {
        "service": {"site": SITE, "shutdown_timeout_s": 10.0},
        "audio": {"source": "file", "file": SPEECH, "realtime": True, "loop": True},
        "transcribe": {
            "model": WHISPER,
            "threads": 2,
            "max_new_tokens": 24,
            "guard": {"enabled": False},
        },
        "sentiment": {"model": "builtin"},
        "mqtt": {"enabled": False},
    }
    for name, values in sections.items():
        config[name] = {**config.get(name, {}), **values}
    return config


# helpers


def show(c: Container, *props: str) -> dict[str, str]:
    """``systemctl show`` properties of the unit."""
    out = c.check(["systemctl", "show", UNIT, *(f"--property={p}" for p in props)]).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def poll(
    c: Container, props: tuple[str, ...], done: Callable[[dict[str, str]], bool], timeout: float
) -> list[dict[str, str]]:
    """Sample ``props`` until ``done`` holds for a sample or ``timeout`` passes; every sample."""
    deadline = time.monotonic() + timeout
    samples = [show(c, *props)]
    while not done(samples[-1]) and time.monotonic() < deadline:
        time.sleep(0.2)
        samples.append(show(c, *props))
    return samples


def cursor(c: Container) -> str:
    """The journal's current end, for reading only what comes after it."""
    out = c.check(["journalctl", "--no-pager", "-n", "0", "--show-cursor"]).stdout
    lines = [line for line in out.splitlines() if line.startswith("-- cursor: ")]
    assert lines, f"no journal cursor in {out!r}"
    return lines[-1].removeprefix("-- cursor: ")


def entries(c: Container, after: str | None = None, *matches: str) -> list[dict[str, Any]]:
    """The unit's journal entries (bellad's own and systemd's about it) as JSON objects."""
    args = ["journalctl", "--no-pager", "-u", UNIT, "-o", "json", *matches]
    if after is not None:
        args.append(f"--after-cursor={after}")
    found = []
    for line in c.check(args).stdout.splitlines():
        entry = json.loads(line)
        message = entry.get("MESSAGE")
        if isinstance(message, list):  # not UTF-8: journalctl gives the bytes
            entry["MESSAGE"] = bytes(message).decode(errors="replace")
        found.append(entry)
    return found


def messages(found: list[dict[str, Any]]) -> list[str]:
    return [str(e.get("MESSAGE", "")) for e in found]


def first(found: list[dict[str, Any]], text: str) -> dict[str, Any]:
    """The first entry whose message contains ``text``."""
    for entry in found:
        if text in str(entry.get("MESSAGE", "")):
            return entry
    raise AssertionError(f"no journal entry contains {text!r}:\n" + "\n".join(messages(found)))


def wait_journal(c: Container, after: str, text: str, timeout: float) -> dict[str, Any]:
    """Wait for an entry of the unit containing ``text`` after the cursor ``after``."""
    deadline = time.monotonic() + timeout
    while True:
        found = entries(c, after)
        if any(text in m for m in messages(found)) or time.monotonic() > deadline:
            return first(found, text)
        time.sleep(0.3)


def utterances_in(status: str) -> int:
    """N of a status line ``listening; N utterances...``, or -1 for another line."""
    match = STATUS_LINE.match(status)
    return int(match[1]) if match else -1


def mono(entry: dict[str, Any]) -> int:
    """When journald received an entry, in CLOCK_MONOTONIC microseconds."""
    return int(entry["__MONOTONIC_TIMESTAMP"])


# the service


@dataclass
class Service:
    """The container with bellad installed, configured and its models imported."""

    c: Container
    seconds: dict[str, float] = field(default_factory=dict)

    def journal(self) -> str:
        return self.c.journal(UNIT, lines=80)

    def running(self) -> dict[str, str]:
        """Start bellad unless it runs; its MainPID and NRestarts."""
        state = show(self.c, "ActiveState")["ActiveState"]
        if state != "active":
            started = self.c.run(["systemctl", "start", UNIT], timeout=300)
            assert started.returncode == 0, f"bellad was {state} and did not start\n" + (
                self.journal()
            )
        return show(self.c, "MainPID", "NRestarts")


def stage_inputs(c: Container, scratch: Path) -> None:
    """Copy the Whisper test model, the speech file and the config into the container."""
    models = ensure_test_models()
    c.copy_in(models.whisper, f"{STAGE}/{WHISPER}")
    samples, _ = join_clips(cards(data_dir()), gap_s=1.5)
    c.copy_in(write_wav(scratch / "speech.wav", samples), f"{STAGE}/speech.wav")
    c.write_file(f"{STAGE}/bellad.toml", tomli_w.dumps(service_config()))
    c.check(["chmod", "-R", "a+rX", STAGE])


def install(c: Container) -> None:
    """scripts/install.sh, then what an administrator does before the first start."""
    c.check(
        ["/src/scripts/install.sh", "--enable", "--config", f"{STAGE}/bellad.toml"], timeout=1200
    )
    # readable by the service's group only, like the config beside it
    c.check(["install", "-m", "0640", "-g", "bellad", f"{STAGE}/speech.wav", SPEECH])
    # the unit creates its state directory at its first start; the import comes before
    c.check(["install", "-d", "-m", "0750", "-o", "bellad", "-g", "bellad", "/var/lib/bellad"])
    # --models-dir: run outside the unit (no $STATE_DIRECTORY), `bellad models` would
    # otherwise use ~bellad/.local/state/bellad/models, not the unit's state directory
    c.check(
        [
            *("/opt/bellad/bin/bellad", "models", "--models-dir", MODELS_DIR),
            *("import", f"{STAGE}/{WHISPER}", "--name", WHISPER),
        ],
        user="bellad",
    )
    c.write_file(DROP_IN, f"[Service]\nWatchdogSec={WATCHDOG_S}s\n")
    c.check(["systemctl", "daemon-reload"])


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """bellad installed in a booted container (powered off and removed afterwards)."""
    began = time.monotonic()
    seconds: dict[str, float] = {}
    try:
        image = base_image()
        seconds["image"] = time.monotonic() - began
        with Container(image, binds_ro={"/src": REPO}) as c:
            seconds["boot"] = c.boot_seconds or 0.0
            mark = time.monotonic()
            stage_inputs(c, tmp_path_factory.mktemp("service"))
            install(c)
            seconds["install"] = time.monotonic() - mark
            yield Service(c, seconds)
            mark = time.monotonic()
        seconds["teardown"] = time.monotonic() - mark
    finally:
        seconds["module"] = time.monotonic() - began
        print("\nwall time: " + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()))


# the tests


def test_install_put_everything_in_place(service: Service) -> None:
    c = service.c
    installed = c.check(
        ["/opt/bellad/bin/bellad", "models", "--models-dir", MODELS_DIR, "list", "--json"],
        user="bellad",
    ).stdout
    names = {m["name"] for m in json.loads(installed)}
    assert names == {WHISPER}
    c.check(["/opt/bellad/bin/bellad", "--config", CONFIG, "check-config"], user="bellad")
    props = show(c, "UnitFileState", "DropInPaths", "FragmentPath")
    assert props["UnitFileState"] == "enabled"
    assert props["DropInPaths"] == DROP_IN
    assert props["FragmentPath"] == f"/etc/systemd/system/{UNIT}"
    c.check(["cmp", f"/src/systemd/{UNIT}", props["FragmentPath"]])


def test_start_returns_once_ready_and_active(service: Service) -> None:
    c = service.c
    props = ("ActiveState", "SubState", "StatusText")
    seen: list[dict[str, str]] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.append(show(c, *props))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    began = time.monotonic()
    start = c.run(["systemctl", "start", UNIT], timeout=300)
    took = time.monotonic() - began
    after = show(c, *props, "NRestarts", "WatchdogUSec", "ActiveEnterTimestampMonotonic")
    done.set()
    watcher.join()
    service.seconds["start"] = took
    print(f"\nsystemctl start bellad: {took:.1f} s")

    assert start.returncode == 0, start.stderr + service.journal()
    # right after start returned: active, with the status bellad sent with READY=1
    assert (after["ActiveState"], after["SubState"]) == ("active", "running"), after
    assert STATUS_LINE.match(after["StatusText"]), after["StatusText"]
    assert after["NRestarts"] == "0"
    assert after["WatchdogUSec"] == f"{WATCHDOG_S}s", "the drop-in's WatchdogSec= applies"

    # while the start job ran, the unit was activating with bellad's start-up status
    starting = [s for s in seen if s["ActiveState"] == "activating"]
    assert starting, f"never saw the unit activating: {seen}"
    assert {s["SubState"] for s in starting} == {"start"}
    assert {s["StatusText"] for s in starting} <= {"", "loading models", "waiting for audio"}
    assert any(s["StatusText"] == "loading models" for s in starting), starting

    # the models were loaded and warm before systemd considered the start done
    found = entries(c)
    warm, ready = first(found, "whisper warm-up took"), first(found, "ready: listening on")
    started = next(e for e in found if e.get("MESSAGE_ID") == UNIT_STARTED_ID)
    assert started["JOB_RESULT"] == "done"
    active_at = int(after["ActiveEnterTimestampMonotonic"])
    assert mono(warm) < mono(ready), "ready before the warm-up"
    assert mono(warm) < active_at, "active before the warm-up was logged"
    assert mono(warm) < mono(started), "start job finished before the warm-up was logged"
    assert "builtin" in first(found, "loaded sentiment model")["MESSAGE"]


def test_status_shows_the_status_line(service: Service) -> None:
    c = service.c
    service.running()
    # a few utterances in, so that the line has something to say
    samples = poll(c, ("StatusText",), lambda s: utterances_in(s["StatusText"]) >= 2, timeout=60)
    assert utterances_in(samples[-1]["StatusText"]) >= 2, f"{samples[-1]}\n{service.journal()}"

    status = c.run(["systemctl", "status", "--no-pager", "--lines=0", UNIT])
    assert status.returncode == 0, status.stdout + status.stderr
    print(f"\n{status.stdout}")
    assert re.search(r"Active: active \(running\)", status.stdout), status.stdout
    line = re.search(r'Status: "(.*)"', status.stdout)
    assert line, status.stdout
    assert utterances_in(line[1]) >= 2, line[1]


def test_reload_applies_a_live_change(service: Service) -> None:
    c = service.c
    before = service.running()
    mark = cursor(c)
    changed = service_config(pipeline={"max_backlog": 3}, vad={"hangover_ms": 500})
    c.write_file(CONFIG, tomli_w.dumps(changed), mode=0o640)
    assert c.check(["stat", "-c", "%U:%G %a", CONFIG]).stdout.split() == ["root:bellad", "640"]

    reload = c.run(["systemctl", "reload", UNIT], timeout=60)
    assert reload.returncode == 0, reload.stderr + service.journal()
    # ExecReload (`bellad reload $MAINPID`) waits for bellad to confirm: the change is
    # applied before systemd's reload job ends, so `systemctl reload` returns after it
    after = entries(c, mark)
    applied = first(after, "reload: applied")
    assert applied["MESSAGE"] == "reload: applied pipeline.max_backlog, vad.hangover_ms"
    reloaded = first(after, "Reloaded bellad.service")
    assert mono(applied) <= mono(reloaded), "systemctl reload returned before bellad applied it"
    assert not [m for m in messages(after) if "restart bellad to apply" in m], messages(after)

    samples = poll(
        c,
        ("ActiveState", "SubState", "StatusText"),
        lambda s: s["SubState"] == "running" and bool(STATUS_LINE.match(s["StatusText"])),
        timeout=15,
    )
    assert samples[-1]["ActiveState"] == "active", samples
    assert STATUS_LINE.match(samples[-1]["StatusText"]), samples
    assert show(c, "MainPID", "NRestarts") == before, "reload must not restart bellad"


def test_reload_of_a_bad_file_fails_and_keeps_the_running_config(service: Service) -> None:
    c = service.c
    before = service.running()
    mark = cursor(c)
    good = c.check(["cat", CONFIG]).stdout
    c.write_file(CONFIG, good + "\n[vad]\nframe_ms = 25\n", mode=0o640)
    try:
        reload = c.run(["systemctl", "reload", UNIT], timeout=60)
    finally:
        c.write_file(CONFIG, good, mode=0o640)
    assert reload.returncode != 0, "systemctl reload must report a refused config"
    refusal = wait_journal(c, mark, "reload: keeping the running config", timeout=15)
    assert "vad" in refusal["MESSAGE"], refusal["MESSAGE"]
    assert show(c, "ActiveState", "SubState") == {"ActiveState": "active", "SubState": "running"}
    assert show(c, "MainPID", "NRestarts") == before, "a refused reload must not restart bellad"


def test_journal_has_structured_fields(service: Service) -> None:
    c = service.c
    service.running()
    utterances = [e for e in entries(c) if "BELLAD_UTTERANCE_ID" in e]
    assert len(utterances) >= 2, service.journal()
    for entry in utterances:
        assert entry["BELLAD_SITE"] == SITE
        assert entry["MESSAGE"].startswith(f"utterance {entry['BELLAD_UTTERANCE_ID']}: ")
        for stage in ("TRANSCRIBE", "HANGOVER", "QUEUE", "SENTIMENT"):
            assert entry[f"BELLAD_{stage}_MS"].isdigit(), (stage, entry)
        assert entry["SYSLOG_IDENTIFIER"] == "bellad"
        assert entry["LOGGER"] == "bellad.pipeline"
        assert entry["PRIORITY"] == "6"
        assert entry["_TRANSPORT"] == "journal"
        assert entry["_SYSTEMD_UNIT"] == UNIT
    assert len({e["BELLAD_UTTERANCE_ID"] for e in utterances}) == len(utterances)
    # the documented query works
    by_site = c.check(["journalctl", "-t", "bellad", f"BELLAD_SITE={SITE}", "-o", "json"])
    assert len(by_site.stdout.splitlines()) >= len(utterances)


def test_watchdog_restarts_a_frozen_daemon(service: Service) -> None:
    c = service.c
    before = service.running()
    pid = before["MainPID"]
    # bellad pings while it runs...
    last_ping = show(c, "WatchdogTimestampMonotonic")["WatchdogTimestampMonotonic"]
    pings = poll(
        c,
        ("WatchdogTimestampMonotonic",),
        lambda s: s["WatchdogTimestampMonotonic"] != last_ping,
        timeout=WATCHDOG_S,
    )
    assert pings[-1]["WatchdogTimestampMonotonic"] != last_ping, "no WATCHDOG=1 from bellad"

    mark = cursor(c)
    c.check(["kill", "-STOP", pid])
    frozen = time.monotonic()
    # ...and not while frozen
    time.sleep(0.5)
    first_seen = show(c, "WatchdogTimestampMonotonic", "MainPID")
    time.sleep(WATCHDOG_S / 2)
    assert show(c, "WatchdogTimestampMonotonic", "MainPID") == first_seen

    samples = poll(
        c,
        ("ActiveState", "SubState", "Result", "MainPID", "NRestarts", "StatusText"),
        lambda s: (
            s["NRestarts"] == str(int(before["NRestarts"]) + 1)
            and s["ActiveState"] == "active"
            and s["MainPID"] not in ("0", pid)
        ),
        timeout=WATCHDOG_S + TIMEOUT_STOP_S + 5 + 120,
    )
    back = time.monotonic() - frozen
    service.seconds["watchdog restart"] = back
    print(f"\nfrozen -> active again: {back:.1f} s")
    last = samples[-1]
    assert last["ActiveState"] == "active", samples[-5:]
    assert last["NRestarts"] == str(int(before["NRestarts"]) + 1), samples[-5:]
    assert last["MainPID"] not in ("0", pid), samples[-5:]
    assert STATUS_LINE.match(last["StatusText"]), last
    assert any(s["Result"] == "watchdog" for s in samples), samples

    log = messages(entries(c, mark))
    assert any(f"Watchdog timeout (limit {WATCHDOG_S}s)!" in m for m in log), log
    assert any("Failed with result 'watchdog'" in m for m in log), log
    assert any("Scheduled restart job" in m for m in log), log
    assert c.run(["kill", "-0", pid]).returncode != 0, "the frozen process is still there"


def test_stop_exits_cleanly(service: Service) -> None:
    c = service.c
    service.running()
    mark = cursor(c)
    began = time.monotonic()
    stop = c.run(["systemctl", "stop", UNIT], timeout=TIMEOUT_STOP_S + 30)
    took = time.monotonic() - began
    service.seconds["stop"] = took
    print(f"\nsystemctl stop bellad: {took:.1f} s")
    assert stop.returncode == 0, stop.stderr
    assert took < TIMEOUT_STOP_S
    props = show(c, "ActiveState", "SubState", "Result", "ExecMainCode", "ExecMainStatus")
    assert props == {
        "ActiveState": "inactive",
        "SubState": "dead",
        "Result": "success",
        "ExecMainCode": "1",  # CLD_EXITED: it exited, no signal killed it
        "ExecMainStatus": "0",
    }, service.journal()
    log = messages(entries(c, mark))
    assert "stopping: finishing the utterance in flight" in log, log
    assert not [m for m in log if "still busy" in m or "SIGKILL" in m], log
    stopped = wait_journal(c, mark, "Stopped bellad.service", timeout=10)
    assert (stopped["MESSAGE_ID"], stopped["JOB_TYPE"], stopped["JOB_RESULT"]) == (
        UNIT_STOPPED_ID,
        "stop",
        "done",
    )
    assert any("Deactivated successfully" in m for m in messages(entries(c, mark))), log
