"""What every ``bellad`` command shares: the global options and one-line errors."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from bellad.config import SYSTEM_CONFIG, Config, default_config_path, load_config
from bellad.errors import BelladError

log = logging.getLogger(__name__)


@dataclass
class AppContext:
    """What the global options decide, shared with every subcommand."""

    explicit_config: Path | None
    log_level: str
    _config: Config | None = field(default=None, repr=False)

    @property
    def config_path(self) -> Path:
        return self.explicit_config or default_config_path()

    def config(self) -> Config:
        """The validated configuration (loaded once); defaults if no file exists at all."""
        if self._config is None:
            path = self.config_path
            if self.explicit_config is None and not path.exists():
                log.warning("no config file at %s: using the built-in defaults", path)
                self._config = Config()
            else:
                self._config = load_config(path)
        return self._config

    @property
    def models_dir(self) -> Path:
        return self.config().models_dir


class BelladGroup(click.Group):
    """Turns a :class:`BelladError` into one line on stderr and its exit status."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BelladError as exc:
            app = ctx.find_object(AppContext)
            click.echo(f"bellad: error: {with_config(str(exc), app)}", err=True)
            ctx.exit(exc.exit_code)


def with_config(message: str, app: AppContext | None) -> str:
    """Fix commands in a message name the config file when it is not the default one."""
    if app is None or app.explicit_config is None or app.explicit_config == SYSTEM_CONFIG:
        return message
    return message.replace("  bellad models ", f"  bellad --config {app.explicit_config} models ")
