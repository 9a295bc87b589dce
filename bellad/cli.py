"""The ``bellad`` command line.

``bellad run`` is the daemon; ``bellad transcribe`` runs the same pipeline over
files or raw PCM on stdin and prints one JSON line per utterance; ``bellad
devices`` lists capture devices; ``bellad check-config`` validates a config
file. Errors bellad can explain print one line (``bellad: error: ...``) and exit
non-zero, without a traceback.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import tomllib
from dataclasses import asdict
from pathlib import Path

import click

from bellad import __version__
from bellad.cliutil import AppContext, BelladGroup
from bellad.config import SYSTEM_CONFIG, default_state_dir, load_config
from bellad.errors import AudioError, BelladError

log = logging.getLogger(__name__)

LOG_LEVELS = ("debug", "info", "warning", "error")


def setup_logging(level: str) -> None:
    """Configure the ``bellad`` logger (never the root logger)."""
    try:
        from bellad.systemd import setup_logging as setup
    except ImportError:
        logger = logging.getLogger("bellad")
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
    else:
        setup(level)


@click.group(cls=BelladGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Config file [default: /etc/bellad/bellad.toml, else config/bellad.toml of a checkout].",
)
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="info",
    show_default=True,
)
@click.version_option(__version__, prog_name="bellad")
@click.pass_context
def main(ctx: click.Context, config_path: Path | None, log_level: str) -> None:
    """bellad: on-device speech to text and sentiment, published over MQTT."""
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `bellad transcribe ... | head` ends quietly
    setup_logging(log_level)
    ctx.obj = AppContext(config_path, log_level.lower())


@main.command()
@click.pass_obj
def run(app: AppContext) -> None:
    """Run the daemon in the foreground until SIGTERM or Ctrl-C."""
    from bellad.modelstore import enforce_offline
    from bellad.service import Daemon

    enforce_offline()
    cfg = app.config()
    sys.exit(Daemon(app.config_path, cfg).run())


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "--rate",
    type=click.IntRange(8000, 192_000),
    default=16_000,
    show_default=True,
    help="Sample rate of raw s16le PCM on stdin ('-').",
)
@click.option(
    "--channels",
    type=click.IntRange(1, 32),
    default=1,
    show_default=True,
    help="Channels of raw PCM on stdin.",
)
@click.option("--realtime", is_flag=True, help="Pace the input as if it were live.")
@click.pass_obj
def transcribe(
    app: AppContext, inputs: tuple[str, ...], rate: int, channels: int, realtime: bool
) -> None:
    """Transcribe audio files (WAV, FLAC, MP3...) or raw PCM on stdin ('-').

    Prints one JSON line per utterance on stdout, then exits.
    """
    from bellad.modelstore import enforce_offline
    from bellad.transcribe_files import transcribe_inputs

    enforce_offline()
    failures = transcribe_inputs(app.config(), inputs, rate, channels, realtime)
    if failures:
        sys.exit(AudioError.exit_code)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def devices(as_json: bool) -> None:
    """List the capture devices PortAudio sees."""
    import json

    from bellad.microphone import PyAudioBackend

    backend = PyAudioBackend()
    found = backend.devices()
    backend.close()
    if as_json:
        click.echo(json.dumps([asdict(d) for d in found]))
        return
    if not found:
        click.echo("no capture devices found (see 'No microphone found' in the README)")
        return
    click.echo(f"{'index':>5}  {'rate':>6}  {'ch':>2}  name")
    for d in found:
        mark = "  (default)" if d.is_default else ""
        click.echo(f"{d.index:>5}  {d.default_rate:>6}  {d.channels:>2}  {d.name}{mark}")


@main.command()
@click.argument("pid", type=int)
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds to wait.")
@click.pass_obj
def reload(app: AppContext, pid: int, timeout: float) -> None:
    """Make the running daemon PID re-read its config and wait until it has.

    systemd's ExecReload. Exits 1 when the daemon refused the new file (it goes on
    with the config it was running); the message says why.
    """
    from bellad.reload import ReloadRecord

    ok, message = ReloadRecord(reload_state_dir(app) / "reload.json").request(pid, timeout)
    click.echo(f"reload: {message}", err=not ok)
    sys.exit(0 if ok else 1)


def reload_state_dir(app: AppContext) -> Path:
    """The daemon's state directory, even when the new config file is broken."""
    if os.environ.get("STATE_DIRECTORY"):
        return default_state_dir()
    try:
        return app.config().service.state_dir
    except BelladError:
        pass
    try:  # the new file is invalid: its state_dir may still be readable
        return Path(tomllib.loads(app.config_path.read_text())["service"]["state_dir"])
    except (OSError, ValueError, KeyError, TypeError):
        return default_state_dir(system=app.config_path == SYSTEM_CONFIG)


@main.command("check-config")
@click.pass_obj
def check_config(app: AppContext) -> None:
    """Validate the config file: exit 0 when valid, 1 with every problem listed."""
    try:
        load_config(app.config_path)
    except BelladError as exc:
        click.echo(f"bellad: error: {exc}", err=True)
        sys.exit(1)
    click.echo(f"{app.config_path}: valid")


def _register_optional_commands() -> None:
    try:
        from bellad.cli_models import models
    except ImportError:
        return
    main.add_command(models)
    try:
        from bellad.benchmark.cli import bench
    except ImportError:
        return
    main.add_command(bench)


_register_optional_commands()
