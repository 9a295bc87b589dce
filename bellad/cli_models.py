"""``bellad models``: pull, list, verify, import and remove models; ensure the config's.

The main CLI attaches the :func:`models` group with ``main.add_command(models)``.
The models dir comes from ``--models-dir``, else ``$BELLAD_MODELS_DIR``, else
the main CLI's context object (``ctx.obj.models_dir``, from the config's
``[models] dir``), else :func:`bellad.modelstore.default_models_dir`.
``ensure`` reads the config through the same object (``ctx.obj.config()``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from bellad.cliutil import BelladGroup
from bellad.config import Config
from bellad.errors import ModelError
from bellad.modelstore import (
    CATALOG,
    KINDS,
    Ensured,
    InstalledModel,
    Kind,
    ModelStore,
    default_models_dir,
    ensure_model,
    human_size,
    prepare_hub_client,
    wanted_models,
)

log = logging.getLogger(__name__)


@dataclass
class ModelsContext:
    """What the group's options decide, handed to each subcommand."""

    explicit_dir: Path | None
    parent: Any  # the main CLI's context object, if any

    @property
    def models_dir(self) -> Path:
        if self.explicit_dir is not None:
            return self.explicit_dir
        inherited = getattr(self.parent, "models_dir", None)
        return Path(inherited) if inherited is not None else default_models_dir()

    def store(self, endpoint: str | None = None) -> ModelStore:
        return ModelStore(self.models_dir, endpoint=endpoint)

    def config(self) -> Config:
        """The main CLI's validated config."""
        load = getattr(self.parent, "config", None)
        if load is None:
            raise click.UsageError("this reads the config: run  bellad --config FILE models ...")
        config: Config = load()
        return config


# the options of the commands that download
endpoint_option = click.option(
    "--endpoint",
    envvar="HF_ENDPOINT",
    default=None,
    help="Hub or mirror to download from [env: HF_ENDPOINT; default: https://huggingface.co].",
)
quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress bars.")


@click.group(cls=BelladGroup)
@click.option(
    "--models-dir",
    type=click.Path(path_type=Path, file_okay=False),
    envvar="BELLAD_MODELS_DIR",
    default=None,
    help="Where models are installed [env: BELLAD_MODELS_DIR; default: [models] dir of the "
    "config, else $STATE_DIRECTORY/models].",
)
@click.pass_context
def models(ctx: click.Context, models_dir: Path | None) -> None:
    """Install and check the models bellad runs (Whisper, sentiment)."""
    ctx.obj = ModelsContext(models_dir, ctx.obj)


@models.command()
@click.argument("names", nargs=-1, required=True)
@click.option("--revision", default=None, help="Branch, tag or commit to pull [default: main].")
@click.option("--force", is_flag=True, help="Download again even if installed and intact.")
@endpoint_option
@quiet_option
@click.pass_obj
def pull(
    obj: ModelsContext,
    names: tuple[str, ...],
    revision: str | None,
    force: bool,
    endpoint: str | None,
    quiet: bool,
) -> None:
    """Download models by name (see `bellad models list --available`) and install them."""
    if revision is not None and len(names) > 1:
        raise click.UsageError("--revision applies to one model at a time")
    store = obj.store(endpoint)
    prepare_hub_client(store.endpoint)  # before anything loads the hub client
    with _progress_bars(enabled=not quiet):
        for name in names:
            result = store.pull(name, revision=revision, force=force)
            m = result.manifest
            verb = "installed" if result.changed else "already installed"
            click.echo(
                f"{name}: {verb} ({m.kind}, {human_size(m.size)}, {m.origin}) in {result.path}"
            )


@models.command()
@endpoint_option
@quiet_option
@click.pass_obj
def ensure(obj: ModelsContext, endpoint: str | None, quiet: bool) -> None:
    """Pull the models the config names that are not installed; no network if all are.

    Checks transcribe.model, and sentiment.model while sentiment is enabled, as
    the daemon does at start. 'builtin' and folder paths are left alone.
    """
    wanted = wanted_models(obj.config())
    store = obj.store(endpoint)
    prepare_hub_client(store.endpoint)  # before anything loads the hub client
    with _progress_bars(enabled=not quiet):
        for want in wanted:
            click.echo(_ensured(ensure_model(store, want)))


def _ensured(done: Ensured) -> str:
    want = done.wanted
    if done.pulled is not None:
        m = done.pulled.manifest
        return f"{want.spec}: installed ({m.kind}, {human_size(m.size)}, {m.origin}) in {done.path}"
    if done.path is None:
        what = "built into bellad" if want.spec == "builtin" else "a folder"
        return f"{want.spec}: {what}, nothing to pull ({want.key})"
    return f"{want.spec}: already installed ({want.kind}, {want.key}) in {done.path}"


@models.command("list")
@click.option("--available", is_flag=True, help="List the models `pull` knows instead.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_obj
def list_(obj: ModelsContext, available: bool, as_json: bool) -> None:
    """List installed models with their size, source and status (quick check)."""
    if available:
        _list_available(as_json)
        return
    found = obj.store().installed()
    if as_json:
        click.echo(json.dumps([_describe(m) for m in found], indent=2))
        return
    if not found:
        click.echo(f"no models installed in {obj.models_dir}")
        return
    click.echo(_table(["NAME", "KIND", "SIZE", "SOURCE", "STATUS"], [_row(m) for m in found]))


def _describe(model: InstalledModel) -> dict[str, Any]:
    m = model.manifest
    return {
        "name": model.name,
        "path": str(model.path),
        "kind": m.kind if m else None,
        "size": m.size if m else None,
        "source": dict(m.source) if m else None,
        "status": model.status,
    }


def _row(m: InstalledModel) -> list[str]:
    if m.manifest is None:
        return [m.name, "?", "?", "?", m.status]
    man = m.manifest
    return [m.name, man.kind, human_size(man.size), man.origin, m.status]


def _list_available(as_json: bool) -> None:
    if as_json:
        data = [
            {"name": e.name, "kind": e.kind, "repo": e.repo_id, "summary": e.summary}
            for e in CATALOG.values()
        ]
        click.echo(json.dumps(data, indent=2))
        return
    rows = [[e.name, e.kind, e.summary, e.repo_id] for e in CATALOG.values()]
    click.echo(_table(["NAME", "KIND", "WHAT", "REPOSITORY"], rows))


@models.command()
@click.argument("name", required=False)
@click.pass_obj
def verify(obj: ModelsContext, name: str | None) -> None:
    """Re-hash every file of NAME (default: all models) against its manifest."""
    store = obj.store()
    found = [store.get(name, full=True)] if name else store.installed(full=True)
    if not found:
        click.echo(f"no models installed in {obj.models_dir}")
        return
    failed = []
    for m in found:
        intact = m.intact
        if intact is not None and m.check is not None:
            click.echo(
                f"{m.name}: ok ({len(intact.files)} files, {human_size(intact.size)}, "
                f"{m.check.seconds:.2f} s)"
            )
            continue
        failed.append(m)
        problems = m.check.problems if m.check is not None else (m.status,)
        for problem in problems:
            click.echo(f"{m.name}: FAILED: {problem}")
    if failed:
        details = "; ".join(f"{m.name}: {_problem(m)}" for m in failed)
        fixes = " && ".join(
            m.manifest.fix_command() if m.manifest else f"bellad models rm {m.name}" for m in failed
        )
        raise ModelError(
            f"{len(failed)} of {len(found)} models failed verification ({details}): run  {fixes}"
        )


def _problem(m: InstalledModel) -> str:
    return m.check.summary() if m.check is not None else m.status


@models.command("import")
@click.argument("path", type=click.Path(path_type=Path, exists=True))
@click.option(
    "--name",
    default=None,
    help="Install under this name [default: from the manifest, else the folder or archive name].",
)
@click.option(
    "--kind",
    type=click.Choice(KINDS),
    default=None,
    help="What the folder holds [default: recognised by its files].",
)
@click.option("--force", is_flag=True, help="Replace an installed model of the same name.")
@click.pass_obj
def import_(
    obj: ModelsContext, path: Path, name: str | None, kind: Kind | None, force: bool
) -> None:
    """Install a model from a folder or a .tar/.tar.gz/.zip archive (no network needed)."""
    result = obj.store().import_model(path, name=name, kind=kind, force=force)
    m = result.manifest
    verb = "imported" if result.changed else "already installed"
    click.echo(
        f"{m.name}: {verb} ({m.kind}, {len(m.files)} files, {human_size(m.size)}, "
        f"{m.origin}) in {result.path}"
    )


@models.command()
@click.argument("names", nargs=-1, required=True)
@click.pass_obj
def rm(obj: ModelsContext, names: tuple[str, ...]) -> None:
    """Delete installed models."""
    store = obj.store()
    for name in names:
        store.remove(name)
        click.echo(f"{name}: removed from {obj.models_dir}")


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *rows]]
    return "\n".join(line.rstrip() for line in lines)


@contextmanager
def _progress_bars(*, enabled: bool) -> Iterator[None]:
    """The hub client's progress bars (shown on a terminal only), or none."""
    from huggingface_hub.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    was_disabled = are_progress_bars_disabled()
    if not enabled:
        disable_progress_bars()
    try:
        yield
    finally:
        if not enabled and not was_disabled:
            enable_progress_bars()
