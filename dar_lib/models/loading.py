"""What every loader of the factory shares: quiet loading, local files checked before any load, and the hub
client's and torch's errors turned into one-line messages that say what to do."""

from __future__ import annotations

import functools
import pickle
import re
from pathlib import Path

from dar_lib.errors import PAPER_SCALE_PAGE, DataError, ModelNotAvailableError
from dar_lib.models.ids import local_paths
from dar_lib.redact import redact
from dar_lib.weightfiles import check_model_files


def quiet_loading() -> None:
    """Turn off the per-file "Loading weights" bars of transformers and diffusers.

    They carry no information for a local load, and in a notebook they become widgets that end up
    frozen in the rendered book. Downloads still log through the hub's own logger.
    """
    import diffusers
    import transformers

    transformers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.disable_progress_bar()


def hub_errors(kind: str):
    """Turn "cannot reach the hub" failures of a loader into :class:`~dar_lib.errors.ModelNotAvailableError`.

    A model id that names no local folder or file must come from the model hub; offline (or with a
    typo in the id) the hub client fails with a connection or "not found" error that does not say
    what to do. The new message names the id and the Paper scale page.
    """
    def wrap(loader):
        @functools.wraps(loader)
        def load(spec, *args, **kwargs):
            for root in local_paths(kind, spec):  # damaged weights: one line naming the file, not a traceback
                check_model_files(root, f"{kind} {redact(spec)!r}")
            try:
                return loader(spec, *args, **kwargs)
            except pickle.UnpicklingError as exc:  # transformers / diffusers read a pickled .bin weights-only
                raise _refused_pickle(kind, spec, exc) from exc
            except (OSError, ConnectionError) as exc:
                parsed = str(spec).partition(":")[2].rsplit("?", 1)[0]  # options are no path
                local = [p for p in re.split(r"[+@]", parsed) if p and Path(p).expanduser().exists()]
                if local or "hub" not in f"{type(exc).__module__} {exc}".lower() and not _is_hub_error(exc):
                    raise

                raise ModelNotAvailableError(
                    f"{kind} {redact(spec)!r}: not a local folder or file, and the model hub could not provide it "
                    f"({type(exc).__name__}: {redact(str(exc).splitlines()[0][:200])}). Download it on a machine with "
                    f"internet and pass its folder instead; see {PAPER_SCALE_PAGE}.") from exc
        return load
    return wrap


def _refused_pickle(kind: str, spec: str, exc: BaseException):
    """A :class:`~dar_lib.errors.DataError` naming the pickled weight file(s) of a local model that torch refused."""
    from .blip_import import refused_pickle_message

    parsed = str(spec).partition(":")[2].rsplit("?", 1)[0]
    roots = [Path(p).expanduser() for p in re.split(r"[+@]", parsed) if p and Path(p).expanduser().exists()]
    files = sorted(f for r in roots for f in ([r] if r.is_file() else r.rglob("*"))
                   if f.suffix in (".bin", ".pt", ".pth", ".ckpt"))
    if len(files) == 1:
        return DataError(f"{kind} {redact(spec)!r}: " + refused_pickle_message(files[0], exc))
    where = ", ".join(map(str, files)) if files else redact(spec)
    return DataError(f"{kind} {redact(spec)!r}: a pickled weight file ({where}) cannot be read weights-only: "
                     + refused_pickle_message(files[0] if files else Path(parsed), exc).partition(": ")[2])


def _is_hub_error(exc: BaseException) -> bool:
    """True for the hub client's and requests' connection / not-found errors."""
    names = {type(e).__name__ for e in (exc, exc.__cause__, exc.__context__) if e is not None}
    return bool(names & {"LocalEntryNotFoundError", "OfflineModeIsEnabled", "RepositoryNotFoundError",
                         "HFValidationError", "ConnectionError", "ConnectTimeout", "MaxRetryError",
                         "GatedRepoError", "RevisionNotFoundError", "EntryNotFoundError"})
