"""The Ansible playbook (ansible/site.yml): lint, syntax, and a real rollout.

The rollout applies the playbook to a fresh Debian bookworm root (the cached
image of tests/support/container.py) through the chroot connection, the way
an SD card image is prepared: one host is both the home's broker and a room.
A check-mode run comes first and must leave the root as it was.
Then the root boots under systemd-nspawn, and the tests check what a home
needs: bellad and Mosquitto active, the room's availability ``online`` at the
broker over TLS, the ACL keeping the room under its own topics, a command from
Home Assistant reaching the room. The playbook then runs against the booted
system (the nsenter connection of community.docker): a second run changes
nothing and passes its health checks, check mode changes nothing, and a
changed variable restarts bellad.

The device has no sound card: bellad plays a generated WAV in a loop, in real
time. The models are the generated test models, pushed from the controller
and imported (``bellad models import``); one more is pulled on the device
(``bellad models pull``) from a stand-in for the model hub on the host.

Needs root, the Debian packages debootstrap and systemd-container, the Python
packages ansible-core, ansible-lint and ansible (for the collections
community.general, community.docker and community.crypto), and pip's access
to the package index for bellad's dependencies.
"""

from __future__ import annotations

import importlib.util
import json
import os
import queue
import re
import shlex
import shutil
import subprocess
import sys
import time
import wave
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.container import Container, base_image, cache_dir, pip_paths
from tests.support.hub import FakeHub
from tests.support.tools import free_ports

pytestmark = pytest.mark.system

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_DIR = REPO / "ansible"
HOST = "room"  # one inventory host: the broker and a room
SITE = "testroom"
OTHER_SITE = "otherroom"
ROLLOUT_TIMEOUT = 1200
# what a first install makes on the device and the broker (paths in the root)
CHECK_MODE_MUST_NOT_MAKE = (
    "opt/bellad",
    "etc/bellad",
    "etc/credstore",
    "etc/mosquitto",
    "etc/systemd/system/bellad.service",
    "var/lib/bellad",
)  # a cold pip cache builds PyAudio and systemd-python

# the Python package that brings each tool or collection
TOOLS = {"ansible-playbook": "ansible-core", "ansible-lint": "ansible-lint"}
COLLECTIONS = {
    "community.general": "ansible",
    "community.docker": "ansible",
    "community.crypto": "ansible",
}


# --------------------------------------------------------------------------- tools


def ansible_tool(name: str) -> str:
    """Path of an Ansible command, from this Python's environment first."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    path = shutil.which(name, path=search)
    if path is None:
        pytest.fail(
            f"{name} not found: install the Python package {TOOLS[name]} "
            f"(pip install -e '.[dev]' installs ansible-core, ansible-lint and ansible)"
        )
    return path


def require_collections() -> None:
    for collection, package in COLLECTIONS.items():
        if importlib.util.find_spec(f"ansible_collections.{collection}") is None:
            pytest.fail(
                f"the Ansible collection {collection} is missing: install the Python "
                f"package {package} (Galaxy is not needed)"
            )


def ansible_env(home: Path) -> dict[str, str]:
    """The environment for Ansible: its own folders, no colours, our ansible.cfg."""
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(ANSIBLE_DIR / "ansible.cfg"),
        ANSIBLE_HOME=str(home / "ansible-home"),
        XDG_CACHE_HOME=str(home / "xdg-cache"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_PIPELINING="1",
        ANSIBLE_CALLBACKS_ENABLED="ansible.posix.profile_tasks",
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
    )
    return env


# --------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class Recap:
    ok: int
    changed: int
    unreachable: int
    failed: int


@dataclass(frozen=True)
class Run:
    """One ansible-playbook run: its output and how long it took."""

    args: tuple[str, ...]
    returncode: int
    output: str
    seconds: float

    @property
    def recap(self) -> Recap:
        found = re.search(
            rf"^{re.escape(HOST)}\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+"
            r"failed=(\d+)",
            self.output,
            re.MULTILINE,
        )
        assert found, f"no PLAY RECAP for {HOST} in the output:\n{self.tail()}"
        return Recap(*(int(n) for n in found.groups()))

    def changed_tasks(self) -> list[str]:
        """The names of the tasks that reported a change."""
        changed, task = [], ""
        for line in self.output.splitlines():
            if line.startswith(("TASK [", "RUNNING HANDLER [")):
                task = line.split("[", 1)[1].rsplit("]", 1)[0]
            elif line.startswith("changed: "):
                changed.append(task)
        return changed

    def result_of(self, task: str) -> str:
        """The first status line (``ok: [room]``, ``skipping: [room]``...) of a task."""
        lines = self.output.splitlines()
        for i, line in enumerate(lines):
            if line.startswith("TASK [") and line.split("[", 1)[1].split("]")[0].endswith(
                f": {task}"
            ):
                status = ("ok:", "changed:", "skipping:", "fatal:", "failed:", "included:")
                return next((a for a in lines[i + 1 : i + 12] if a.startswith(status)), "")
        return ""

    def tail(self, n: int = 6000) -> str:
        return self.output[-n:]

    def check(self) -> Run:
        assert self.returncode == 0, (
            f"ansible-playbook {shlex.join(self.args)} failed ({self.returncode}):\n{self.tail()}"
        )
        return self


def run_playbook(
    inventory: Path, env: Mapping[str, str], *args: str, wrapper: list[str] | None = None
) -> Run:
    argv = [ansible_tool("ansible-playbook"), "-i", str(inventory), "site.yml", *args]
    started = time.monotonic()
    proc = subprocess.run(
        [*(wrapper or []), *argv],
        cwd=ANSIBLE_DIR,
        env=dict(env),
        capture_output=True,
        text=True,
        errors="replace",
        timeout=ROLLOUT_TIMEOUT,
        check=False,
    )
    seconds = time.monotonic() - started
    return Run(tuple(args), proc.returncode, proc.stdout + proc.stderr, seconds)


def chroot_wrapper(root: Path) -> list[str]:
    """Run a command in a private mount namespace in which ``root`` is ready for chroot.

    Like a tool that prepares an image: /proc mounted, and what pip needs from
    the host (its cache, and the files PIP_* settings name, such as a CA
    bundle) bound at the same paths. The mounts vanish with the command.
    """
    pip_cache = cache_dir() / "pip"
    pip_cache.mkdir(exist_ok=True)
    binds = [(pip_cache, "/root/.cache/pip")]
    binds += [(path, str(path)) for path in pip_paths()]
    script = ["set -e", "root=$1; shift", 'mount -t proc proc "$root/proc"']
    for host, inside in binds:
        target = root / inside.lstrip("/")
        if host.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch(exist_ok=True)
        script.append(f'mount --bind {shlex.quote(str(host))} "$root"{shlex.quote(inside)}')
    # the chroot gets this environment: pip's cache at the bound folder, not under XDG_CACHE_HOME
    script.append('export PIP_CACHE_DIR=/root/.cache/pip; exec "$@"')
    return [
        "unshare",
        "--mount",
        "--propagation=private",
        "sh",
        "-c",
        "\n".join(script),
        "sh",
        str(root),
    ]


# --------------------------------------------------------------------------- the home


def write_wav(path: Path) -> None:
    """Three voiced bursts with pauses: something for the VAD to open and close on."""
    rate = 16_000
    rng = np.random.default_rng(0)
    parts = []
    for _ in range(3):
        parts.append(np.zeros(rate // 2))
        t = np.arange(int(rate * 1.2)) / rate
        voiced = np.sin(2 * np.pi * 180 * t) * (1 + 0.5 * np.sin(2 * np.pi * 4 * t))
        parts.append(0.3 * voiced + 0.05 * rng.standard_normal(t.size))
    parts.append(np.zeros(rate))
    samples = (np.concatenate(parts) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())


def write_inventory(path: Path, connection: Mapping[str, Any], home: Home) -> None:
    """One host in both groups; JSON is YAML, and the YAML inventory plugin reads it."""
    host = {**connection, "ansible_python_interpreter": "/usr/bin/python3"}
    inventory = {
        "all": {
            "children": {
                "mosquitto": {
                    "hosts": {HOST: host},
                    "vars": {
                        "mosquitto_port": home.port,
                        "mosquitto_tls_server_names": ["localhost", "127.0.0.1"],
                    },
                },
                "bellad": {
                    "hosts": {HOST: {"bellad_site": SITE, "bellad_room": "Test room"}},
                    "vars": {
                        "bellad_source_dir": str(REPO),
                        "bellad_wheel_dir": str(home.dir / "wheels"),
                        "bellad_mqtt_host": "localhost",
                        "bellad_mqtt_port": home.port,
                        "bellad_audio_source": "file",
                        "bellad_audio_file_src": str(home.dir / "speech.wav"),
                        "bellad_audio_loop": True,
                        "bellad_audio_realtime": True,
                        "bellad_whisper_model": "whisper-test",
                        "bellad_sentiment_model": "sentiment-test",
                        "bellad_threads": 2,
                        # pushed from the controller and imported, or pulled on the device
                        "bellad_models": [
                            {"name": "whisper-test", "src": str(home.models.whisper)},
                            {"name": "sentiment-test", "src": str(home.models.sentiment)},
                            {"name": "tiny.en"},
                        ],
                        "bellad_models_hub_endpoint": home.hub.url,
                        # random weights decode garbage: keep it short
                        "bellad_config_extra": {"transcribe": {"max_new_tokens": 24}},
                    },
                },
            }
        }
    }
    path.write_text(json.dumps(inventory, indent=2))


@dataclass
class Home:
    """The rolled-out home: its folders, the booted container and the runs."""

    dir: Path
    port: int
    models: Any
    hub: FakeHub
    env: dict[str, str] = field(default_factory=dict)
    container: Container | None = None
    runs: dict[str, Run] = field(default_factory=dict)
    left_by_check: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def record(self, name: str, run: Run) -> Run:
        """Keep a run, and its output in <home>/<name>.log for a look after a failure."""
        self.runs[name] = run
        (self.dir / f"{name}.log").write_text(run.output)
        return run

    @property
    def inventory_dir(self) -> Path:
        return self.dir / "inventory"

    @property
    def booted_inventory(self) -> Path:
        return self.inventory_dir / "booted.yml"

    @property
    def ca(self) -> Path:
        return self.inventory_dir / "pki" / "ca.crt"

    def password(self, user: str) -> str:
        return (self.inventory_dir / "credentials" / user).read_text().strip()

    @property
    def booted(self) -> Container:
        assert self.container is not None
        return self.container


# --------------------------------------------------------------------------- MQTT


class Mqtt:
    """A paho client over TLS to the container's broker, collecting what it receives."""

    def __init__(self, home: Home, user: str | None, *, v5: bool = False) -> None:
        import paho.mqtt.client as paho

        self.messages: queue.Queue[tuple[str, bytes, bool]] = queue.Queue()
        self.acks: dict[int, int] = {}
        self.connack: queue.Queue[str] = queue.Queue()
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=f"test-{user or 'anonymous'}-{os.getpid()}",
            protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
        )
        if user is not None:
            self.client.username_pw_set(user, home.password(user))
        self.client.tls_set(ca_certs=str(home.ca))
        self.client.on_connect = lambda c, u, f, reason, p: self.connack.put(str(reason))
        self.client.on_message = lambda c, u, m: self.messages.put(
            (m.topic, bytes(m.payload), bool(m.retain))
        )
        self.client.on_publish = lambda c, u, mid, reason, p: self.acks.__setitem__(
            mid, int(reason.value)
        )
        self.client.connect("localhost", home.port, keepalive=10)
        self.client.loop_start()
        self.reason = self.connack.get(timeout=10)

    def __enter__(self) -> Mqtt:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def subscribe(self, topic: str) -> None:
        self.client.subscribe(topic, qos=1)
        time.sleep(0.3)

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> int:
        """Publish with QoS 1; the PUBACK's reason code (MQTT 5), 0 for 3.1.1."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(timeout=10)
        deadline = time.monotonic() + 5
        while info.mid not in self.acks and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.acks[info.mid]

    def received(self, seconds: float) -> list[tuple[str, bytes, bool]]:
        """Everything that arrives within ``seconds``."""
        out, deadline = [], time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                out.append(self.messages.get(timeout=left))
            except queue.Empty:
                break
        return out

    def wait_for(self, topic: str, seconds: float, match: Any = None) -> bytes | None:
        """The first payload on ``topic`` (passing ``match``) within ``seconds``."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                got, payload, _ = self.messages.get(timeout=left)
            except queue.Empty:
                return None
            if got == topic and (match is None or match(payload)):
                return payload
        return None


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, test_models: Any) -> Iterator[Home]:
    """A home rolled out by the playbook: first through a chroot, then booted."""
    ansible_tool("ansible-playbook")
    require_collections()
    started = time.monotonic()
    image = base_image()
    folder = tmp_path_factory.mktemp("home")
    # the model hub, on the host's network, which the container shares: serves tiny.en
    hub = FakeHub()
    hub.add_repo("Systran/faster-whisper-tiny.en", test_models.whisper)
    (port,) = free_ports(1)
    result = Home(folder, port, test_models, hub, env=ansible_env(folder))
    result.inventory_dir.mkdir()
    write_wav(folder / "speech.wav")
    result.timings["image"] = time.monotonic() - started
    container = Container(image)
    result.container = container
    try:
        hub.start()
        root = container.prepare()
        inventory = result.inventory_dir / "chroot.yml"
        write_inventory(
            inventory,
            {"ansible_connection": "community.general.chroot", "ansible_host": str(root)},
            result,
        )
        # check mode first: it must change nothing on the fresh root
        fresh_check = run_playbook(inventory, result.env, "--check", wrapper=chroot_wrapper(root))
        result.record("fresh-check", fresh_check)
        result.left_by_check = [path for path in CHECK_MODE_MUST_NOT_MAKE if (root / path).exists()]
        if "\nbellad:" in "\n" + (root / "etc/passwd").read_text():
            result.left_by_check.append("the user bellad")
        # as when preparing an image: packages must not start daemons in the chroot
        policy = root / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        result.record("chroot", run_playbook(inventory, result.env, wrapper=chroot_wrapper(root)))
        policy.unlink()
        if result.runs["chroot"].returncode == 0:
            booting = time.monotonic()
            container.start()
            result.timings["boot"] = time.monotonic() - booting
            write_inventory(
                result.booted_inventory,
                {
                    "ansible_connection": "community.docker.nsenter",
                    "ansible_nsenter_pid": container.leader,
                },
                result,
            )
        yield result
    finally:
        container.close()
        hub.stop()
        print(f"\nrollout timings: {format_timings(result)}")


def format_timings(home: Home) -> str:
    parts = [f"{name} {seconds:.1f} s" for name, seconds in home.timings.items()]
    parts += [f"{name} run {run.seconds:.1f} s" for name, run in home.runs.items()]
    return ", ".join(parts)


@pytest.fixture(scope="module")
def booted(home: Home) -> Home:
    """The home after the chroot run succeeded and the root booted."""
    home.runs["chroot"].check()
    assert home.container is not None and home.container.root is not None
    return home


def wait_active(container: Container, unit: str, timeout: float = 120) -> str:
    deadline, state = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        state = container.run(["systemctl", "is-active", unit]).stdout.strip()
        if state in ("active", "failed"):
            break
        time.sleep(0.5)
    return state


# --------------------------------------------------------------------------- lint


def test_ansible_lint_production_profile(tmp_path: Path) -> None:
    proc = subprocess.run(
        [ansible_tool("ansible-lint"), "--profile", "production", "--offline", "--nocolor"],
        cwd=ANSIBLE_DIR,
        env=ansible_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_syntax_check_of_the_example_home(tmp_path: Path) -> None:
    require_collections()
    proc = subprocess.run(
        [
            ansible_tool("ansible-playbook"),
            "--syntax-check",
            "-i",
            "inventory/example.yml",
            "site.yml",
        ],
        cwd=ANSIBLE_DIR,
        env=ansible_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mosquitto_password_hashes_are_mosquittos_own(tmp_path: Path) -> None:
    """The role's password file filter: Mosquitto's format, and stable while unchanged."""
    spec = importlib.util.spec_from_file_location(
        "mosquitto_passwd", ANSIBLE_DIR / "roles/mosquitto/filter_plugins/mosquitto_passwd.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    first = module.mosquitto_password_file("", {"alice": "secret", "bob": "hunter2"})
    assert first == module.mosquitto_password_file(first, {"alice": "secret", "bob": "hunter2"})
    changed = module.mosquitto_password_file(first, {"alice": "secret", "bob": "other"})
    assert changed.splitlines()[0] == first.splitlines()[0]
    assert changed.splitlines()[1] != first.splitlines()[1]
    assert module.mosquitto_password_file(first, {"bob": "hunter2"}) == first.splitlines()[1] + "\n"
    # the format of mosquitto_passwd; that the broker accepts it, the rollout shows
    assert re.fullmatch(r"alice:\$7\$101\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==", first.split()[0])


# --------------------------------------------------------------------------- the rollout


@pytest.mark.timeout(ROLLOUT_TIMEOUT * 2)
def test_check_mode_on_a_fresh_root_changes_nothing_there(home: Home) -> None:
    run = home.runs["fresh-check"].check()
    # it says that bellad and Mosquitto would be installed...
    assert run.result_of(
        "Report that check mode cannot compare a device bellad is not installed on yet"
    ).startswith("changed:")
    # ...and makes none of it
    assert home.left_by_check == []


def test_first_run_prepares_the_root_through_a_chroot(home: Home) -> None:
    run = home.runs["chroot"].check()
    assert run.recap.changed > 0 and run.recap.failed == 0
    changed = run.changed_tasks()
    for task in (
        "mosquitto : Install Mosquitto",
        "bellad : Create the system user bellad",
        "bellad : Install bellad into its virtual environment, at version " + pyproject_version(),
        "bellad : Import the model with bellad models import: whisper-test",
        "bellad : Pull the models that come from the model hub",
    ):
        assert task in changed, (task, changed)
    # not booted: enabled for the next boot, neither started nor checked
    assert run.result_of("Start bellad.service").startswith("skipping")
    assert run.result_of("Wait for bellad.service to be active").startswith("skipping")
    root = home.booted.root
    assert root is not None
    wants = root / "etc/systemd/system/multi-user.target.wants"
    assert (wants / "bellad.service").is_symlink()
    assert (wants / "mosquitto.service").is_symlink()


def test_bellad_and_mosquitto_are_active_after_boot(booted: Home) -> None:
    c = booted.booted
    for unit in ("mosquitto.service", "bellad.service"):
        state = wait_active(c, unit)
        assert state == "active", f"{unit} is {state}:\n{c.journal(unit)}"
        assert c.run(["systemctl", "is-enabled", unit]).stdout.strip() == "enabled"


def test_the_installed_unit_is_the_projects_and_verifies(booted: Home) -> None:
    c = booted.booted
    installed = c.check(["cat", "/etc/systemd/system/bellad.service"]).stdout
    assert installed == (REPO / "systemd/bellad.service").read_text()
    # under the container's systemd, with the installed program: a chroot checks nothing
    verify = c.run(["systemd-analyze", "verify", "bellad.service"])
    assert verify.returncode == 0 and not (verify.stdout + verify.stderr).strip(), verify


def test_config_password_and_ca_are_in_place(booted: Home) -> None:
    c = booted.booted
    check = c.check(
        ["/opt/bellad/bin/bellad", "--config", "/etc/bellad/bellad.toml", "check-config"],
        user="bellad",
    )
    assert "valid" in check.stdout
    config = c.check(["cat", "/etc/bellad/bellad.toml"]).stdout
    assert f'site = "{SITE}"' in config and f"port = {booted.port}" in config
    password = booted.password(f"bellad-{SITE}")
    assert password not in config
    stat = c.check(
        [
            "stat",
            "-c",
            "%a %U %G",
            "/etc/credstore/bellad.mqtt-password",
            "/etc/bellad/bellad.toml",
            "/etc/mosquitto/passwd",
            "/etc/mosquitto/certs/server.key",
        ]
    ).stdout.split("\n")
    assert stat[:4] == [
        "600 root root",
        "640 root bellad",
        "640 root mosquitto",
        "640 root mosquitto",
    ]
    assert c.check(["cat", "/etc/credstore/bellad.mqtt-password"]).stdout == password
    assert password not in c.check(["cat", "/etc/mosquitto/passwd"]).stdout
    version = c.check(["/opt/bellad/bin/bellad", "--version"]).stdout
    assert version.split()[-1] == pyproject_version()
    models = json.loads(
        c.check(
            [
                "/opt/bellad/bin/bellad",
                "models",
                "--models-dir",
                "/var/lib/bellad/models",
                "list",
                "--json",
            ]
        ).stdout
    )
    assert {(m["name"], m["status"]) for m in models} == {
        ("whisper-test", "ok"),
        ("sentiment-test", "ok"),
        ("tiny.en", "ok"),
    }


def pyproject_version() -> str:
    found = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M)
    assert found
    return found.group(1)


def test_the_room_is_online_at_the_broker_over_tls(booted: Home) -> None:
    assert wait_active(booted.booted, "bellad.service") == "active"
    with Mqtt(booted, "homeassistant") as ha:
        assert ha.reason == "Success"
        ha.subscribe(f"bellad/{SITE}/availability")
        payload = ha.wait_for(f"bellad/{SITE}/availability", 60, lambda p: p == b"online")
        assert payload == b"online", booted.booted.journal("bellad.service")
    with Mqtt(booted, None) as anonymous:
        assert anonymous.reason == "Not authorized"


def test_the_acl_keeps_the_room_under_its_own_topics(booted: Home) -> None:
    with Mqtt(booted, "homeassistant") as ha, Mqtt(booted, f"bellad-{SITE}", v5=True) as room:
        ha.subscribe("bellad/#")
        ha.received(1.0)  # the retained messages
        # another site's prefix: refused (MQTT 5 says so in the PUBACK: 0x87)
        assert room.publish(f"bellad/{OTHER_SITE}/transcript", b"forged") == 0x87
        assert room.publish(f"homeassistant/device/bellad_{OTHER_SITE}/config", b"{}") == 0x87
        # its own prefix: accepted (0 or 0x10, "no matching subscribers")
        assert room.publish(f"bellad/{SITE}/acl-probe", b"mine") in (0x00, 0x10)
        got = ha.received(1.5)
        topics = [topic for topic, _, _ in got]
        assert f"bellad/{SITE}/acl-probe" in topics
        assert not [t for t in topics if OTHER_SITE in t]
        # the room reads only its commands: not its own retained availability, nor others'
        for topic in ("#", f"bellad/{SITE}/availability", f"bellad/{SITE}/listening/set"):
            room.subscribe(topic)
        assert ha.publish(f"bellad/{SITE}/listening/set", b"ON") == 0
        assert {topic for topic, _, _ in room.received(1.5)} == {f"bellad/{SITE}/listening/set"}


def test_a_command_from_home_assistant_reaches_the_room(booted: Home) -> None:
    def listening(payload: bytes) -> bool | None:
        value = json.loads(payload).get("listening")
        return value if isinstance(value, bool) else None

    with Mqtt(booted, "homeassistant") as ha:
        ha.subscribe(f"bellad/{SITE}/state")
        ha.received(0.5)
        for command, expected in ((b"OFF", False), (b"ON", True)):
            ha.publish(f"bellad/{SITE}/listening/set", command)
            state = ha.wait_for(f"bellad/{SITE}/state", 15, lambda p, e=expected: listening(p) is e)
            assert state is not None, f"no state with listening={expected} after {command!r}"


@pytest.mark.timeout(ROLLOUT_TIMEOUT)
def test_a_second_run_on_the_booted_home_changes_nothing(booted: Home) -> None:
    run = run_playbook(booted.booted_inventory, booted.env)
    booted.record("second", run)
    run.check()
    assert run.recap.changed == 0, f"changed: {run.changed_tasks()}\n{run.tail()}"
    # booted now: the health checks really ran, and passed
    for task in (
        "Wait for the broker to accept the monitor account over TLS",
        "Wait for bellad.service to be active",
        "Wait for the device's availability to read online at the broker",
    ):
        assert run.result_of(task).startswith("ok:"), (task, run.result_of(task))


@pytest.mark.timeout(ROLLOUT_TIMEOUT)
def test_check_mode_on_the_booted_home_changes_nothing(booted: Home) -> None:
    run = run_playbook(booted.booted_inventory, booted.env, "--check", "--diff")
    booted.record("check", run)
    run.check()
    assert run.recap.changed == 0, f"changed: {run.changed_tasks()}\n{run.tail()}"


@pytest.mark.timeout(ROLLOUT_TIMEOUT)
def test_a_changed_threshold_restarts_bellad_and_it_comes_back_online(booted: Home) -> None:
    c = booted.booted
    before = c.check(["systemctl", "show", "-P", "MainPID", "bellad.service"]).stdout.strip()
    run = run_playbook(booted.booted_inventory, booted.env, "-e", "bellad_vad_hangover_ms=700")
    booted.record("change", run)
    run.check()
    assert run.changed_tasks() == [
        "bellad : Write /etc/bellad/bellad.toml, checked by bellad check-config",
        "bellad : Restart bellad",
    ], run.tail()
    after = c.check(["systemctl", "show", "-P", "MainPID", "bellad.service"]).stdout.strip()
    assert after != before
    assert "hangover_ms = 700" in c.check(["cat", "/etc/bellad/bellad.toml"]).stdout
    assert run.result_of(
        "Wait for the device's availability to read online at the broker"
    ).startswith("ok:")
