"""Credentials in model ids and URLs never reach a CSV column, record, log line, status page or error."""

from __future__ import annotations

import json
import logging

import pytest

from dar_lib.redact import RedactingFormatter, redact, redact_all

KEY = "s3cr3t-K3y-123"
ID = f"openai:gpt-4o@https://me:{KEY}@llm.example/v1?api-version=2024-06-01&api-key={KEY}"


@pytest.mark.parametrize("text, want", [
    (ID, "openai:gpt-4o@https://me:***@llm.example/v1?api-version=2024-06-01&api-key=***"),
    (f"http://h:8080/v1?token={KEY}&sig={KEY}#x", "http://h:8080/v1?token=***&sig=***#x"),
    (f"https://h/x?X-Amz-Signature={KEY}&access_token={KEY}&key={KEY}",
     "https://h/x?X-Amz-Signature=***&access_token=***&key=***"),
    (f"Authorization: Bearer {KEY}", "Authorization: Bearer ***"),
    ("see sk-abcdefghijklmnop here", "see *** here"),
    ("openai:gpt-4o@http://127.0.0.1:8000/v1?api-version=1", "openai:gpt-4o@http://127.0.0.1:8000/v1?api-version=1"),
    ("toy:clip-zs", "toy:clip-zs"),
])
def test_redact(text, want):
    assert redact(text) == want


def test_redact_all_and_non_strings():
    assert redact(3) == 3 and redact(None) is None
    assert redact_all({"a": [ID, 1], "b": (ID,)}) == {"a": [redact(ID), 1], "b": (redact(ID),)}


def test_csv_columns_carry_no_credential():
    """``reformulator`` and ``reformulator_fingerprint`` (and every other provenance column) are redacted."""
    from dar_lib.evaluate import EvalConfig, provenance

    class Model:
        def fingerprint(self):
            return ID + "|v2"

    row = provenance(EvalConfig(benchmark="toy-flan", encoder="toy:clip-zs", reformulator=ID),
                     {"reformulator": Model()})
    assert KEY not in json.dumps(row, default=str)
    assert row["reformulator"] == redact(ID) and row["reformulator_fingerprint"] == redact(ID) + "|v2"


def test_status_records_and_parameter_tables_carry_no_credential(tmp_path):
    from dar_lib import status
    from dar_lib.profiles import parameters_table

    rec = status.make_record("04_x", "04_x.ipynb", {"reformulator": ID}, 1.0, "failed", error=f"boom at {ID}")
    path = status.write_record(tmp_path, rec)
    assert KEY not in path.read_text() and "api-key=***" in path.read_text()
    shown = status.records_table(status.read_records(tmp_path))
    assert KEY not in shown.to_string()
    assert KEY not in parameters_table({"reformulator": ID}).to_string()


def test_log_lines_are_redacted():
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "calling %s", (ID,), None)
    line = RedactingFormatter(logging.Formatter("%(levelname)s %(message)s")).format(record)
    assert KEY not in line and line.startswith("WARNING calling openai:gpt-4o@https://me:***@")


def test_cli_error_line_is_redacted(capsys):
    """A bad id carrying a key: the one-line error names it without the key."""
    from dar_lib.cli import main

    rc = main(["eval", "--benchmark", "toy-flan", "--encoder", f"nosuch:model@https://u:{KEY}@h/x?api-key={KEY}",
               "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("dar: error:") and KEY not in err and "u:***@" in err


def test_the_cli_installs_the_redacting_formatter_once(capsys):
    from dar_lib.cli import main

    for _ in range(2):
        main(["eval", "--benchmark", "nosuch", "--encoder", "toy:clip-zs", "--quiet"])
    formatters = [h.formatter for h in logging.getLogger().handlers]
    assert formatters and all(isinstance(f, RedactingFormatter) and not isinstance(f.inner, RedactingFormatter)
                              for f in formatters)
