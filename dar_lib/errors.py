"""Errors raised by dar_lib for bad input data."""


class DataError(ValueError):
    """Bad input data: malformed file, wrong schema, missing or undecodable image.

    The message always names the file and, where there is one, the record.
    """


class EmbeddingError(ValueError):
    """Embeddings that cannot be ranked: non-finite values or zero-norm rows.

    A diverged fine-tune, a bad checkpoint import or a half-precision overflow produces them; ranked
    anyway they tie everywhere and a "strictly higher" rank would put every target first. The
    message names the encoder (or the array) and how many rows are bad.
    """


class ModelNotAvailableError(RuntimeError):
    """A model id that is neither a local folder nor reachable on the model hub.

    The message names the id and points to the book's *Paper scale* page, which says how to get
    the real checkpoints onto a machine (and how to run on local copies).
    """


#: Where a user learns how to obtain the paper profile's models (named in error messages).
PAPER_SCALE_PAGE = "the book's 'Paper scale' page (book/paper_scale.md)"


class MissingDependencyError(ImportError):
    """An optional dependency a chosen feature needs is not installed; the message says how to install it.

    Example: ``dar eval --backend ray`` without the ``ray`` extra.
    """


class EndpointError(RuntimeError):
    """A remote endpoint (an OpenAI-compatible LLM server) that refused, failed or gave no usable answer.

    The message is one line naming the endpoint with its credentials redacted
    (:func:`dar_lib.redact.redact`): the HTTP status and the start of the body, a body that is not
    the expected JSON, empty or null content, a refused connection, or the deadline passed.
    """
