"""R1/R2 reformulators split by job: reply parsing, the chat protocol, one module per LLM backend, replay, caching.

The public names are re-exported by :mod:`dar_lib.models.reformulators`; import them from there.
"""
