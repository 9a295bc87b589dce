"""The hub client's settings and errors: endpoint, offline mode, one-line failures.

``huggingface_hub`` is never imported at module level here, so the daemon can
call :func:`enforce_offline` before anything loads it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator

from bellad.errors import ModelError
from bellad.modelstore.catalog import CATALOG

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://huggingface.co"


class FetchError(ModelError):
    """The hub cannot be reached or has no such repository; ``reason`` says why in a few words."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def hub_endpoint(explicit: str | None = None) -> str:
    """The hub to pull from: ``explicit``, else ``$HF_ENDPOINT`` now, else the public hub."""
    return (explicit or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def prepare_hub_client(endpoint: str) -> None:
    """Make ``endpoint`` the hub client's own default too, if it is not loaded yet.

    bellad passes the endpoint to every call, but ``huggingface_hub`` reads
    ``HF_ENDPOINT`` once, at import, for requests of its own (2.x fetches
    ``/api/agent-harnesses`` once per process): with a mirror, those must not
    go to the public hub.
    """
    if "huggingface_hub" not in sys.modules:
        os.environ["HF_ENDPOINT"] = endpoint
        return
    from huggingface_hub import constants

    if endpoint != constants.ENDPOINT:
        log.debug(
            "huggingface_hub was loaded for %s; bellad pulls from %s", constants.ENDPOINT, endpoint
        )


def enforce_offline() -> None:
    """Forbid the hub client any network access in this process.

    Sets ``HF_HUB_OFFLINE=1`` (read by ``huggingface_hub`` when it is first
    imported) and, if it was imported already, flips its live flag too, so
    that every hub request fails with ``OfflineModeIsEnabled`` instead of
    reaching out. Telemetry is switched off as well.
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True  # type: ignore[attr-defined]
        constants.HF_HUB_DISABLE_TELEMETRY = True  # type: ignore[attr-defined]
        log.debug("huggingface_hub was already imported: switched its offline flag")


@contextlib.contextmanager
def hub_errors(name: str, endpoint: str, path: str | None = None) -> Iterator[None]:
    """Turn what the hub client raises into one-line :class:`ModelError` messages."""
    import httpx2
    from huggingface_hub.errors import (
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        yield
    except OfflineModeIsEnabled:
        raise FetchError(
            f"cannot pull {name!r}: the hub client is in offline mode (HF_HUB_OFFLINE): "
            f"unset HF_HUB_OFFLINE, or copy the model over and run  bellad models import PATH",
            "HF_HUB_OFFLINE is set",
        ) from None
    except RepositoryNotFoundError:
        repo = CATALOG[name].repo_id
        raise FetchError(
            f"the hub at {endpoint} has no repository {repo} for model {name!r}: check HF_ENDPOINT",
            f"no repository {repo} there",
        ) from None
    except RevisionNotFoundError:
        raise ModelError(
            f"{CATALOG[name].repo_id} has no such revision: run  bellad models pull {name}"
        ) from None
    except (HfHubHTTPError, httpx2.HTTPError, OSError) as exc:
        what = f"{path} of model {name!r}" if path else f"model {name!r}"
        reason = _reason(exc)
        message = (
            f"downloading {what} from {endpoint} failed ({reason}): run  "
            f"bellad models pull {name}  again, it resumes where it stopped"
        )
        if isinstance(exc, httpx2.HTTPError | ConnectionError | TimeoutError):
            raise FetchError(message, reason) from exc
        raise ModelError(message) from exc  # here, not the network: a full disk, say


def _reason(exc: BaseException) -> str:
    """A short, one-line reason for a failed request."""
    response = getattr(exc, "response", None)
    if response is not None:
        return f"HTTP {response.status_code} {response.reason_phrase}".strip()
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
