"""Errors raised by dar_lib for bad input data."""


class DataError(ValueError):
    """Bad input data: malformed file, wrong schema, missing or undecodable image.

    The message always names the file and, where there is one, the record.
    """
