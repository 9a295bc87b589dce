"""The service unit passes ``systemd-analyze verify`` silently and is well hardened.

``systemd-analyze verify`` exits 0 even on unknown keys and bad values (it
only prints warnings), so any output at all counts as a failure here. It also
checks that ``ExecStart=``'s program exists: the tests run it in a private
mount namespace where a stub stands at exactly the path the unit names
(``/opt/bellad/bin/bellad``), so the unit file is verified unchanged and the
host is not touched. The real program is verified in
tests/system/test_container.py after a real install.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.system

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "bellad.service"
JETSON = REPO / "systemd" / "jetson.conf"
EXEC_PATH = "/opt/bellad/bin/bellad"
MAX_EXPOSURE = 2.0


def tool(name: str, package: str) -> str:
    """Path of a required tool, or a failure naming its Debian package."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: install the Debian package {package}")
    return path


def unit_settings(path: Path) -> dict[str, list[str]]:
    """``Section.Key`` -> values, in order (unit files may repeat keys)."""
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        settings.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return settings


def stage_units(directory: Path, *, jetson: bool) -> Path:
    """Copy the unit (and the Jetson drop-in) into a unit directory; return the unit."""
    shutil.copy(UNIT, directory / "bellad.service")
    if jetson:
        (directory / "bellad.service.d").mkdir()
        shutil.copy(JETSON, directory / "bellad.service.d" / "jetson.conf")
    return directory / "bellad.service"


def verify(unit: Path, unit_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze verify unit`` with a stub program at ``EXEC_PATH``.

    A tmpfs over /opt in a private mount namespace holds the stub; with
    ``unit_dir``, drop-ins are read from there (``$SYSTEMD_UNIT_PATH``).
    """
    analyze = tool("systemd-analyze", "systemd")
    unshare = tool("unshare", "util-linux")
    stub_dir = Path(EXEC_PATH).parent
    script = (
        "set -e; mount -t tmpfs -o mode=0755 bellad-verify /opt; "
        f'mkdir -p {stub_dir}; printf "#!/bin/sh\\nexit 0\\n" > {EXEC_PATH}; '
        f'chmod 0755 {EXEC_PATH}; exec "$0" verify "$1"'
    )
    args = [unshare, "--mount", "--propagation=private"]
    if os.geteuid() != 0:
        args.append("--map-root-user")
    env = dict(os.environ, SYSTEMD_LOG_COLOR="0")
    if unit_dir is not None:
        # a trailing ":" keeps the default unit directories (for targets and slices)
        env["SYSTEMD_UNIT_PATH"] = f"{unit_dir}:"
    return subprocess.run(
        [*args, "sh", "-c", script, analyze, str(unit)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def exposure(unit: Path, unit_dir: Path | None = None) -> tuple[float, str]:
    """The overall exposure score of ``systemd-analyze security --offline=yes``."""
    env = dict(os.environ, SYSTEMD_LOG_COLOR="0")
    if unit_dir is not None:
        env["SYSTEMD_UNIT_PATH"] = f"{unit_dir}:"
    proc = subprocess.run(
        [tool("systemd-analyze", "systemd"), "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    output = proc.stdout + proc.stderr
    match = re.search(r"Overall exposure level for bellad\.service: (\d+(?:\.\d+)?)", output)
    assert match is not None, f"no exposure score in the output:\n{output}"
    return float(match.group(1)), output


def test_exec_start_runs_the_installed_bellad() -> None:
    (exec_start,) = unit_settings(UNIT)["Service.ExecStart"]
    assert exec_start.split()[0] == EXEC_PATH, "the verify stub must stand where ExecStart points"
    assert "/etc/bellad/bellad.toml" in exec_start
    assert exec_start.split()[-1] == "run"


def test_verify_prints_nothing() -> None:
    proc = verify(UNIT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout + proc.stderr == "", f"systemd-analyze verify warned:\n{proc.stderr}"


def test_verify_with_the_jetson_drop_in_prints_nothing(tmp_path: Path) -> None:
    unit = stage_units(tmp_path, jetson=True)
    proc = verify(unit, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout + proc.stderr == "", f"systemd-analyze verify warned:\n{proc.stderr}"


def test_verify_catches_mistakes(tmp_path: Path) -> None:
    # the check above means something only if verify does complain about mistakes
    unit = tmp_path / "bellad.service"
    text = UNIT.read_text().replace("[Service]\n", "[Service]\nWatchdogSecs=30s\n", 1)
    unit.write_text(text.replace("ProtectSystem=strict", "ProtectSystem=strictest"))
    output = verify(unit).stderr
    assert "WatchdogSecs" in output
    assert "protect system value" in output


def test_exposure_is_at_most_2(tmp_path: Path) -> None:
    score, output = exposure(UNIT)
    assert score <= MAX_EXPOSURE, output


def test_exposure_with_the_jetson_drop_in_is_at_most_2(tmp_path: Path) -> None:
    unit = stage_units(tmp_path, jetson=True)
    score, output = exposure(unit, tmp_path)
    assert "@resources is included" in output, "the drop-in was not read"
    assert score <= MAX_EXPOSURE, output


def test_service_protocol_settings() -> None:
    settings = unit_settings(UNIT)
    assert settings["Service.Type"] == ["notify"]
    assert settings["Service.NotifyAccess"] == ["main"]
    assert settings["Service.WatchdogSec"] == ["30s"]
    assert settings["Service.Restart"] == ["on-failure"]
    assert settings["Service.RestartPreventExitStatus"] == ["78"]
    assert settings["Service.ExecReload"] == [
        "/opt/bellad/bin/bellad --config /etc/bellad/bellad.toml reload $MAINPID"
    ]
    assert settings["Service.User"] == ["bellad"]
    assert settings["Service.SupplementaryGroups"] == ["audio"]
    assert "Unit.StartLimitIntervalSec" in settings
    assert "Unit.StartLimitBurst" in settings


def test_mqtt_password_credential_is_optional() -> None:
    # systemd 252 fails the start (243/CREDENTIALS) when LoadCredential= names
    # an absolute path that does not exist; a credential-store name is optional
    (credential,) = unit_settings(UNIT)["Service.LoadCredential"]
    name, _, source = credential.partition(":")
    assert name == "mqtt-password"
    assert source and not source.startswith("/"), credential
