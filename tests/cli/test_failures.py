"""Every failure path of the command line: a clear message, exit 2 (usage/parse) or 1 (other), no
traceback, nothing half-written. Signals and concurrent runs go through subprocesses."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from conceptlang.cli import main


def invoke(*args, input=None):
    """Run the CLI in-process; a Python exception escaping it (a traceback) fails the test."""
    res = CliRunner().invoke(main, [str(a) for a in args], input=input)
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise AssertionError(f"traceback for {args}: {res.exception!r}\n{res.output}") from res.exception
    assert "Traceback" not in res.output
    return res


# ---- source text: byte order mark -----------------------------------------------------------


def test_a_utf8_bom_is_skipped_in_files_and_stdin(tmp_path):
    f = tmp_path / "bom.cl"
    f.write_bytes(b"\xef\xbb\xbfmale & smiling\n")
    res = invoke("check", f)
    assert res.exit_code == 0 and res.output == f"{f}: ok\n"
    res = invoke("parse", "-", input=b"\xef\xbb\xbfa & (")
    assert res.exit_code == 2
    # The error points into the text after the BOM: column 6 is just after "(".
    assert "at line 1, column 6:\n  a & (\n       ^" in res.output
    res = invoke("parse", "--json", "-f", f)
    body = json.loads(res.output)["body"]
    assert res.exit_code == 0 and body["type"] == "And" and body["span"] == {"line": 1, "column": 1, "start": 0, "end": 14}
    # Only a leading BOM is skipped: one inside the text is a syntax error.
    res = invoke("parse", "-", input="a &\ufeff b".encode())
    assert res.exit_code == 2 and "unexpected character '\\ufeff'" in res.output


def test_stdin_that_is_not_utf8_is_a_usage_error():
    res = invoke("parse", "-", input=b"a & \xff")
    assert res.exit_code == 2 and "Error: -: not UTF-8 text (invalid start byte at byte 4)" in res.output


def test_caret_for_carriage_return_input():
    res = invoke("parse", "-", input=b"a &\r(")
    assert res.exit_code == 2
    assert res.output.endswith("at line 1, column 6:\n  a & (\n       ^\n")


def test_underflowing_weight_is_a_parse_error():
    res = invoke("parse", "1e-400 * a")
    assert res.exit_code == 2 and "the number 1e-400 is too small: it would be rounded to 0" in res.output
