"""bellad under a real systemd 252, in a systemd-nspawn container.

The harness (tests/support/container.py) boots a cached Debian bookworm. The
tests prove the harness with a small ``Type=notify`` unit, then run
``scripts/install.sh`` against this checkout (bind-mounted read-only at
/src) and check what it installs. Finally they run the installed, hardened
``bellad.service`` with only ``ExecStart=`` replaced by a probe that uses the
installed ``bellad.systemd`` for sd_notify and journal logging and runs
numpy, onnxruntime and CTranslate2 (an int8 Whisper with random weights):
the hardening must not break the inference stack.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.container import Completed, Container, base_image

pytestmark = pytest.mark.system

REPO = Path(__file__).resolve().parents[2]
UNIT = "bellad.service"
PROBE_DIR = "/usr/local/lib/bellad-probe"
DROP_IN = "/etc/systemd/system/bellad.service.d/test-probe.conf"

# A Type=notify service as a Python one-liner: READY=1 after 2 s, then a
# WATCHDOG=1 ping at half of WatchdogSec=, $PINGS times (default: forever).
# No "$", "%" or backslashes: systemd would expand or unescape them.
NOTIFY_ONE_LINER = (
    "import os,socket,time;"
    "a=os.environ['NOTIFY_SOCKET'];a=chr(0)+a[1:] if a[0]=='@' else a;"
    "s=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM);"
    "time.sleep(2);s.sendto(b'STATUS=warmed up',a);s.sendto(b'READY=1',a);"
    "p=int(os.environ['WATCHDOG_USEC'])/2e6;n=int(os.environ.get('PINGS') or 10**9);"
    "any(s.sendto(b'WATCHDOG=1',a)<0 or time.sleep(p) for i in range(n));"
    "time.sleep(3600)"
)

NOTIFY_UNIT = f"""[Unit]
Description=bellad harness check: Type=notify with a watchdog

[Service]
Type=notify
NotifyAccess=main
WatchdogSec=3s
TimeoutStartSec=30s
Restart=no
ExecStart=/usr/bin/python3 -c "{NOTIFY_ONE_LINER}"
"""

# Stands in for `bellad run` in the hardened unit (see the module docstring).
PROBE = r"""
import json, logging, os, signal, socket, sys
from pathlib import Path

results = {}


def check(name, fn):
    try:
        results[name] = ["ok", fn()]
    except BaseException as exc:  # noqa: BLE001 - every failure is a result
        results[name] = ["FAIL", f"{type(exc).__name__}: {exc}"]


from bellad.reload import ReloadRecord
from bellad.systemd import make_notifier, setup_logging, watchdog_interval

setup_logging("info")
log = logging.getLogger("bellad.probe")
notifier = make_notifier()
notifier.status("probe: loading")
MODELS = os.path.dirname(os.path.abspath(__file__))

import numpy as np

check("numpy", lambda: float((np.ones((128, 128)) @ np.ones((128, 128))).sum()))


def onnx():
    import onnxruntime as ort

    session = ort.InferenceSession(
        os.path.join(MODELS, "sentiment.onnx"), providers=["CPUExecutionProvider"]
    )
    probs = session.run(None, {"x": np.ones((1, 1, 64), np.float32)})[0]
    return round(float(probs.sum()), 3)


check("onnxruntime", onnx)


def whisper():
    import ctranslate2

    model = ctranslate2.models.Whisper(
        os.path.join(MODELS, "whisper"), device="cpu", compute_type="int8"
    )
    mel = np.random.default_rng(1).standard_normal((1, 80, 3000)).astype(np.float32)
    prompt = ["<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"]
    out = model.generate(ctranslate2.StorageView.from_array(mel), [prompt], max_length=8)
    return len(out[0].sequences_ids[0])


check("ctranslate2", whisper)


def tcp():
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    socket.getaddrinfo("localhost", port, type=socket.SOCK_STREAM, flags=socket.AI_ADDRCONFIG)
    client = socket.create_connection(("localhost", port), timeout=5)
    peer, _ = server.accept()
    client.sendall(b"x")
    return peer.recv(1).decode()


check("tcp", tcp)


def family_blocked(family, kind):
    try:
        socket.socket(family, kind).close()
    except OSError as exc:
        return exc.strerror
    return "allowed"


check("netlink", lambda: family_blocked(socket.AF_NETLINK, socket.SOCK_RAW))
check("packet", lambda: family_blocked(socket.AF_PACKET, socket.SOCK_RAW))


def credential():
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if not directory or not os.listdir(directory):
        return None
    with open(os.path.join(directory, "mqtt-password")) as f:
        return f.read().strip()


check("credential", credential)


def access(path):
    try:
        with open(path, "w"):
            pass
    except OSError as exc:
        return exc.strerror
    os.unlink(path)
    return "writable"


check("state", lambda: access(os.path.join(os.environ["STATE_DIRECTORY"], "probe-w")))
check("cache", lambda: access(os.path.join(os.environ["CACHE_DIRECTORY"], "probe-w")))
check("tmp", lambda: access("/tmp/probe-w"))
check("etc_bellad", lambda: access("/etc/bellad/probe-w"))
check("opt_bellad", lambda: access("/opt/bellad/probe-w"))
check("usr", lambda: access("/usr/probe-w"))
def listing(path):
    try:
        return os.listdir(path)
    except OSError as exc:
        return exc.strerror


check("root_home", lambda: listing("/root"))
check("audio_file", lambda: open("/srv/bellad-audio-probe").read().strip())


def status_fields():
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("CapEff", "CapBnd", "NoNewPrivs", "Seccomp"):
                fields[key] = value.strip()
    return fields


check("status", status_fields)
check("uid", os.getuid)
check("watchdog_interval", watchdog_interval)

log.info(
    "probe results",
    extra={"site": "probe-site", "utterance_id": "u-probe", "timings": {"asr": 0.8123}},
)
with open(os.path.join(os.environ["STATE_DIRECTORY"], "probe.json"), "w") as f:
    json.dump(results, f)

signals = {signal.SIGHUP, signal.SIGTERM}
signal.pthread_sigmask(signal.SIG_BLOCK, signals)
notifier.ready("probe: ready")
interval = watchdog_interval() or 1.0
while True:
    info = signal.sigtimedwait(signals, interval)
    if info is None:
        notifier.watchdog()
    elif info.si_signo == signal.SIGHUP:
        notifier.reloading("probe: reloading")
        # what the daemon does for ExecReload (bellad reload $MAINPID) to return
        ReloadRecord(Path(os.environ["STATE_DIRECTORY"]) / "reload.json").record(True, "probe")
        notifier.ready("probe: reloaded")
    else:
        break
notifier.stopping("probe: stopping")
log.info("probe stopped")
"""


# helpers


def show(container: Container, unit: str, *props: str) -> dict[str, str]:
    """``systemctl show`` properties of ``unit``."""
    args = ["systemctl", "show", unit, *(f"--property={p}" for p in props)]
    out = container.check(args).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def wait_for(container: Container, unit: str, prop: str, value: str, timeout: float) -> str:
    """Poll ``unit``'s property until it equals ``value``; return the last value seen."""
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        seen = show(container, unit, prop)[prop]
        if seen == value:
            break
        time.sleep(0.2)
    return seen


def write_tiny_whisper(directory: Path) -> None:
    """A CTranslate2 Whisper with the real layout, tiny sizes and random int8 weights."""
    from ctranslate2.specs import whisper_spec

    d_model, d_ffn, n_mels = 64, 128, 80
    rng = np.random.default_rng(0)

    def rand(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.05).astype(np.float32)

    def norm(spec: Any) -> None:
        spec.gamma = np.ones(d_model, np.float32)
        spec.beta = np.zeros(d_model, np.float32)

    def linear(spec: Any, rows: int, cols: int) -> None:
        spec.weight = rand(rows, cols)
        spec.bias = rand(rows)

    def ffn(spec: Any) -> None:
        norm(spec.layer_norm)
        linear(spec.linear_0, d_ffn, d_model)
        linear(spec.linear_1, d_model, d_ffn)

    tokens = [
        "<|endoftext|>",
        "<|startoftranscript|>",
        "<|en|>",
        "<|transcribe|>",
        "<|translate|>",
        "<|notimestamps|>",
        "<|nocaptions|>",
        *(f"t{i}" for i in range(40)),
    ]
    spec = whisper_spec.WhisperSpec(1, 2, 1, 2)
    encoder, decoder = spec.encoder, spec.decoder
    encoder.conv1.weight, encoder.conv1.bias = rand(d_model, n_mels, 3), rand(d_model)
    encoder.conv2.weight, encoder.conv2.bias = rand(d_model, d_model, 3), rand(d_model)
    encoder.position_encodings.encodings = rand(1500, d_model)
    for layer in encoder.layer:
        norm(layer.self_attention.layer_norm)
        linear(layer.self_attention.linear[0], 3 * d_model, d_model)
        linear(layer.self_attention.linear[1], d_model, d_model)
        ffn(layer.ffn)
    norm(encoder.layer_norm)
    decoder.embeddings.weight = rand(len(tokens), d_model)
    decoder.position_encodings.encodings = rand(448, d_model)
    for layer in decoder.layer:
        norm(layer.self_attention.layer_norm)
        linear(layer.self_attention.linear[0], 3 * d_model, d_model)
        linear(layer.self_attention.linear[1], d_model, d_model)
        norm(layer.attention.layer_norm)
        linear(layer.attention.linear[0], d_model, d_model)
        linear(layer.attention.linear[1], 2 * d_model, d_model)
        linear(layer.attention.linear[2], d_model, d_model)
        ffn(layer.ffn)
    norm(decoder.layer_norm)
    decoder.projection.weight = decoder.embeddings.weight
    spec.register_vocabulary(tokens)
    spec.config.suppress_ids = []
    spec.config.suppress_ids_begin = []
    spec.config.lang_ids = [tokens.index("<|en|>")]
    spec.config.alignment_heads = [(0, 0)]
    spec.validate()
    spec.optimize(quantization="int8")
    directory.mkdir(parents=True, exist_ok=True)
    spec.save(str(directory))


def write_tiny_onnx(path: Path) -> None:
    """A small ONNX graph (Conv, MatMul, Softmax) like a sentiment head."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    initializers = [
        numpy_helper.from_array(rng.standard_normal((8, 1, 5)).astype(np.float32), "k"),
        numpy_helper.from_array(rng.standard_normal((64, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(np.array([0], np.int64), "start"),
        numpy_helper.from_array(np.array([64], np.int64), "end"),
        numpy_helper.from_array(np.array([1], np.int64), "axis"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "k"], ["conv"]),
        helper.make_node("Flatten", ["conv"], ["flat"]),
        helper.make_node("Slice", ["flat", "start", "end", "axis"], ["features"]),
        helper.make_node("MatMul", ["features", "w"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 64])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 3])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


# fixtures


@pytest.fixture(scope="session")
def image() -> Path:
    """The cached Debian root (built on first use: a few minutes)."""
    started = time.monotonic()
    path = base_image()
    print(f"\ncontainer image {path.name}: ready in {time.monotonic() - started:.1f} s")
    return path


@pytest.fixture
def container(image: Path) -> Iterator[Container]:
    """A freshly booted container, powered off and removed afterwards."""
    with Container(image, binds_ro={"/src": REPO}) as booted:
        print(f"\nbooted {booted.machine} in {booted.boot_seconds:.1f} s")
        yield booted


@dataclass
class Installed:
    """A container in which scripts/install.sh has run."""

    container: Container
    result: Completed
    seconds: float


@pytest.fixture(scope="module")
def installed(image: Path) -> Iterator[Installed]:
    """One container for the install tests below (they run in file order)."""
    with Container(image, binds_ro={"/src": REPO}) as booted:
        started = time.monotonic()
        result = booted.run(["/src/scripts/install.sh"], timeout=900)
        seconds = time.monotonic() - started
        print(f"\ninstall.sh in the container: {seconds:.1f} s")
        yield Installed(booted, result, seconds)


@pytest.fixture
def probe(installed: Installed, tmp_path: Path) -> Iterator[Container]:
    """The installed unit with ExecStart= replaced by the probe (removed afterwards)."""
    c = installed.container
    assert installed.result.returncode == 0, installed.result.stderr
    write_tiny_whisper(tmp_path / "whisper")
    write_tiny_onnx(tmp_path / "sentiment.onnx")
    c.copy_in(tmp_path / "whisper", f"{PROBE_DIR}/whisper")
    c.copy_in(tmp_path / "sentiment.onnx", f"{PROBE_DIR}/sentiment.onnx")
    c.write_file(f"{PROBE_DIR}/probe.py", PROBE)
    c.check(f"chmod -R a+rX {PROBE_DIR}")
    # a file only the group audio may read, like /dev/snd/*
    c.check(
        "echo audio-ok > /srv/bellad-audio-probe && "
        "chgrp audio /srv/bellad-audio-probe && chmod 0640 /srv/bellad-audio-probe"
    )
    c.write_file(
        DROP_IN,
        f"[Service]\nExecStart=\nExecStart=/opt/bellad/bin/python {PROBE_DIR}/probe.py\n",
    )
    c.check(["systemctl", "daemon-reload"])
    try:
        yield c
    finally:
        c.run(["systemctl", "stop", UNIT])
        c.run(["rm", "-f", DROP_IN, "/etc/credstore/bellad.mqtt-password"])
        c.run(["systemctl", "daemon-reload"])
        c.run(["systemctl", "reset-failed", UNIT])


def probe_results(c: Container) -> dict[str, list[object]]:
    """What the probe found, from /var/lib/bellad/probe.json."""
    results: dict[str, list[object]] = json.loads(
        c.check(["cat", "/var/lib/bellad/probe.json"]).stdout
    )
    return results


# the harness


def test_container_runs_commands(container: Container) -> None:
    result = container.run("echo out; echo err >&2; exit 3")
    assert (result.returncode, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert container.check(["cat", "/proc/1/comm"]).stdout.strip() == "systemd"
    assert container.check(["systemctl", "--version"]).stdout.startswith("systemd 252")
    assert container.check(["cat", "-"], input="through stdin").stdout == "through stdin"
    assert container.check(["test", "-f", "/src/scripts/install.sh"]).returncode == 0
    assert container.run(["touch", "/src/x"]).returncode != 0, "/src must be read-only"


def test_notify_unit_start_waits_for_ready(container: Container) -> None:
    container.write_file("/etc/systemd/system/notify-check.service", NOTIFY_UNIT)
    container.check(["systemctl", "daemon-reload"])

    started = time.monotonic()
    container.check(["systemctl", "start", "notify-check.service"], timeout=60)
    took = time.monotonic() - started
    assert took >= 2, f"systemctl start returned after {took:.1f} s, before READY=1"
    assert container.run(["systemctl", "is-active", "notify-check.service"]).stdout == "active\n"
    assert show(container, "notify-check.service", "StatusText")["StatusText"] == "warmed up"

    # WATCHDOG=1 pings keep it alive well past WatchdogSec=3s
    time.sleep(4)
    state = show(container, "notify-check.service", "ActiveState", "NRestarts")
    assert state == {"ActiveState": "active", "NRestarts": "0"}

    container.check(["systemctl", "stop", "notify-check.service"], timeout=60)
    state = show(container, "notify-check.service", "ActiveState", "Result")
    assert state == {"ActiveState": "inactive", "Result": "success"}


def test_notify_unit_without_pings_is_killed_by_the_watchdog(container: Container) -> None:
    unit = NOTIFY_UNIT.replace("[Service]\n", "[Service]\nEnvironment=PINGS=1\n")
    container.write_file("/etc/systemd/system/notify-check.service", unit)
    container.check(["systemctl", "daemon-reload"])
    container.check(["systemctl", "start", "notify-check.service"], timeout=60)
    result = wait_for(container, "notify-check.service", "Result", "watchdog", timeout=15)
    assert result == "watchdog", container.journal("notify-check.service")


# scripts/install.sh


def test_install_script_succeeds(installed: Installed) -> None:
    result = installed.result
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    # the image holds every Debian package install.sh needs: apt must not run
    assert "Installing Debian packages" not in result.stdout


def test_install_creates_the_user(installed: Installed) -> None:
    c = installed.container
    passwd = c.check(["getent", "passwd", "bellad"]).stdout.strip().split(":")
    assert passwd[5:] == ["/var/lib/bellad", "/usr/sbin/nologin"]
    assert int(passwd[2]) < 1000, "bellad must be a system user"
    groups = c.check(["id", "-nG", "bellad"]).stdout.split()
    assert "audio" in groups


def test_install_creates_the_venv(installed: Installed) -> None:
    c = installed.container
    modules = "bellad, bellad.systemd, systemd.daemon, systemd.journal, ctranslate2, onnxruntime"
    c.check(["/opt/bellad/bin/python", "-c", f"import {modules}, pyaudio, webrtcvad"])
    version = c.check(["/opt/bellad/bin/bellad", "--version"]).stdout
    assert "bellad" in version
    # built from a copy: nothing written into the read-only checkout
    assert c.run(["test", "-e", "/src/build"]).returncode != 0


def test_install_copies_the_config(installed: Installed) -> None:
    c = installed.container
    c.check(["cmp", "/src/config/bellad.toml", "/etc/bellad/bellad.toml"])
    modes = c.check(["stat", "-c", "%a %U %G", "/etc/bellad", "/etc/bellad/bellad.toml"]).stdout
    assert modes.splitlines() == ["750 root bellad", "640 root bellad"]
    # the service user can read it
    c.check(
        ["/opt/bellad/bin/bellad", "--config", "/etc/bellad/bellad.toml", "check-config"],
        user="bellad",
    )


def test_install_installs_a_unit_that_verifies(installed: Installed) -> None:
    c = installed.container
    c.check(["cmp", f"/src/systemd/{UNIT}", f"/etc/systemd/system/{UNIT}"])
    verify = c.run(["systemd-analyze", "verify", UNIT])
    assert verify.returncode == 0
    assert verify.stdout + verify.stderr == "", verify.stderr
    props = show(c, UNIT, "LoadState", "UnitFileState")
    assert props == {"LoadState": "loaded", "UnitFileState": "disabled"}


def test_install_again_keeps_the_config(installed: Installed) -> None:
    c = installed.container
    c.check("echo '# edited by the admin' >> /etc/bellad/bellad.toml")
    started = time.monotonic()
    again = c.run(["/src/scripts/install.sh", "--enable"], timeout=600)
    print(f"\nsecond install.sh: {time.monotonic() - started:.1f} s")
    assert again.returncode == 0, again.stderr
    assert "exists, left as it is" in again.stdout
    assert "# edited by the admin" in c.check(["cat", "/etc/bellad/bellad.toml"]).stdout
    assert show(c, UNIT, "UnitFileState") == {"UnitFileState": "enabled"}


# the hardened unit


def test_hardened_unit_runs_the_inference_stack(probe: Container) -> None:
    c = probe
    started = time.monotonic()
    start = c.run(["systemctl", "start", UNIT], timeout=120)
    print(f"\nprobe start (imports, ONNX and Whisper runs): {time.monotonic() - started:.1f} s")
    assert start.returncode == 0, c.journal(UNIT)
    assert show(c, UNIT, "StatusText")["StatusText"] == "probe: ready"

    results = probe_results(c)
    failed = {name: value for name, value in results.items() if value[0] != "ok"}
    assert not failed, failed
    values = {name: value[1] for name, value in results.items()}
    assert values["ctranslate2"] >= 1  # type: ignore[operator]
    assert values["onnxruntime"] == 1.0
    assert values["tcp"] == "x"
    assert values["netlink"] == "Address family not supported by protocol"
    assert values["packet"] == "Address family not supported by protocol"
    assert values["credential"] is None, "no credential file: started without a password"
    assert values["state"] == values["cache"] == values["tmp"] == "writable"
    assert values["etc_bellad"] in ("Permission denied", "Read-only file system")
    assert values["opt_bellad"] == values["usr"] == "Read-only file system"
    assert values["root_home"] == "Permission denied", "ProtectHome= hides /root"
    assert values["audio_file"] == "audio-ok", "the group audio must work under PrivateUsers="
    assert values["watchdog_interval"] == 15.0
    status = values["status"]
    assert isinstance(status, dict)
    assert status["CapEff"] == status["CapBnd"] == "0000000000000000"
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2"
    uid = c.check(["id", "-u", "bellad"]).stdout.strip()
    assert values["uid"] == int(uid)

    # onnxruntime reads /proc/cpuinfo: the unit must not hide it (ProcSubset=pid)
    pid = show(c, UNIT, "MainPID")["MainPID"]
    stderr_lines = c.check(["journalctl", f"_PID={pid}", "-o", "cat", "--no-pager"]).stdout
    assert "cpuinfo" not in stderr_lines, stderr_lines


def test_hardened_unit_logs_structured_fields(probe: Container) -> None:
    c = probe
    c.check(["systemctl", "start", UNIT], timeout=120)
    out = c.check(
        ["journalctl", "SYSLOG_IDENTIFIER=bellad", "BELLAD_SITE=probe-site", "-o", "json", "-n1"]
    ).stdout
    entry = json.loads(out.splitlines()[-1])
    assert entry["MESSAGE"] == "probe results"
    assert entry["BELLAD_UTTERANCE_ID"] == "u-probe"
    assert entry["BELLAD_ASR_MS"] == "812"
    assert entry["PRIORITY"] == "6"
    assert entry["_SYSTEMD_UNIT"] == UNIT
    assert entry["_TRANSPORT"] == "journal"


def test_hardened_unit_reads_the_mqtt_password_credential(probe: Container) -> None:
    c = probe
    c.check(
        "install -d -m 0700 /etc/credstore && "
        "printf 's3cret\\n' > /etc/credstore/bellad.mqtt-password && "
        "chmod 0600 /etc/credstore/bellad.mqtt-password"
    )
    c.check(["systemctl", "restart", UNIT], timeout=120)
    assert probe_results(c)["credential"] == ["ok", "s3cret"]


def test_hardened_unit_reloads_and_stops(probe: Container) -> None:
    c = probe
    c.check(["systemctl", "start", UNIT], timeout=120)
    c.check(["systemctl", "reload", UNIT], timeout=60)
    status = wait_for(c, UNIT, "StatusText", "probe: reloaded", timeout=10)
    assert status == "probe: reloaded", c.journal(UNIT)
    assert show(c, UNIT, "ActiveState", "NRestarts") == {"ActiveState": "active", "NRestarts": "0"}
    c.check(["systemctl", "stop", UNIT], timeout=60)
    state = show(c, UNIT, "ActiveState", "Result", "ExecMainStatus")
    assert state == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}


@pytest.mark.parametrize(("status", "substate"), [(78, "failed"), (1, "auto-restart")])
def test_restart_policy(installed: Installed, status: int, substate: str) -> None:
    c = installed.container
    command = f"/opt/bellad/bin/python -c {shlex.quote(f'raise SystemExit({status})')}"
    c.write_file(DROP_IN, f"[Service]\nExecStart=\nExecStart={command}\n")
    c.check(["systemctl", "daemon-reload"])
    try:
        assert c.run(["systemctl", "start", UNIT], timeout=60).returncode != 0
        props = show(c, UNIT, "SubState", "ExecMainStatus")
        assert props == {"SubState": substate, "ExecMainStatus": str(status)}
    finally:
        c.run(["systemctl", "stop", UNIT])
        c.run(["rm", "-f", DROP_IN])
        c.run(["systemctl", "daemon-reload"])
        c.run(["systemctl", "reset-failed", UNIT])


def test_real_bellad_with_a_missing_model_is_not_restarted(installed: Installed) -> None:
    # the real ExecStart= and the shipped config: no model is installed yet,
    # so bellad must exit 78 (EX_CONFIG) inside the sandbox, and stay down
    c = installed.container
    try:
        assert c.run(["systemctl", "start", UNIT], timeout=120).returncode != 0
        props = show(c, UNIT, "SubState", "ExecMainStatus", "NRestarts")
        assert props == {"SubState": "failed", "ExecMainStatus": "78", "NRestarts": "0"}
        assert "bellad: error:" in c.journal(UNIT)
    finally:
        c.run(["systemctl", "reset-failed", UNIT])


# Jetson drop-in and uninstall (last: they change the installation)


def test_install_jetson_drop_in(installed: Installed) -> None:
    c = installed.container
    result = c.run(["/src/scripts/install.sh", "--skip-apt", "--jetson"], timeout=600)
    assert result.returncode == 0, result.stderr
    c.check(["cmp", "/src/systemd/jetson.conf", f"/etc/systemd/system/{UNIT}.d/jetson.conf"])
    verify = c.run(["systemd-analyze", "verify", UNIT])
    assert verify.stdout + verify.stderr == "", verify.stderr
    groups = show(c, UNIT, "SupplementaryGroups")["SupplementaryGroups"].split()
    assert groups == ["audio", "video", "render"]


def test_uninstall_keeps_config_and_state_unless_purged(installed: Installed) -> None:
    c = installed.container
    c.check("echo kept > /var/lib/bellad/marker")
    removed = c.run(["/src/scripts/uninstall.sh"])
    assert removed.returncode == 0, removed.stderr
    for gone in ("/opt/bellad", f"/etc/systemd/system/{UNIT}", f"/etc/systemd/system/{UNIT}.d"):
        assert c.run(["test", "-e", gone]).returncode != 0, f"{gone} left behind"
    assert show(c, UNIT, "LoadState") == {"LoadState": "not-found"}
    c.check(["test", "-f", "/etc/bellad/bellad.toml"])
    c.check(["test", "-f", "/var/lib/bellad/marker"])
    c.check(["getent", "passwd", "bellad"])

    purged = c.run(["/src/scripts/uninstall.sh", "--purge"])
    assert purged.returncode == 0, purged.stderr
    for gone in ("/etc/bellad", "/var/lib/bellad"):
        assert c.run(["test", "-e", gone]).returncode != 0, f"{gone} left behind"
    assert c.run(["getent", "passwd", "bellad"]).returncode != 0
