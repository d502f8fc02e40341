"""`conceptlang parse` and `conceptlang check`."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from conceptlang.cli import main
from conceptlang.syntax import parse


@pytest.fixture
def runner():
    return CliRunner()


def test_parse_prints_a_tree(runner):
    result = runner.invoke(main, ["parse", "(male & smiling) | ~black_hair"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "Or  @1:2",
        "├── And  @1:2",
        "│   ├── Concept male  @1:2",
        "│   └── Concept smiling  @1:9",
        "└── Not  @1:20",
        "    └── Concept black_hair  @1:21",
    ]


def test_parse_json_round_trips_structure(runner):
    result = runner.invoke(main, ["parse", "--json", "happy = smiling & ~eyeglasses; 2.5 * happy | color.red"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["type"] == "Program"
    assert data["definitions"][0]["name"] == "happy"
    assert data["definitions"][0]["expr"]["terms"][1] == {
        "type": "Not",
        "expr": {"type": "Concept", "name": "eyeglasses", "family": None, "args": None, "text": "eyeglasses",
                 "span": {"line": 1, "column": 20, "start": 19, "end": 29}},
        "span": {"line": 1, "column": 19, "start": 18, "end": 29},
    }
    body = data["body"]
    assert body["type"] == "Or" and body["terms"][0]["weight"] == 2.5
    assert body["terms"][1]["family"] == "color"


def test_parse_text_and_expand(runner):
    result = runner.invoke(main, ["parse", "--text", "--expand", "h = a & ~b; (h) | c"])
    assert result.exit_code == 0
    assert result.output == "a & ~b | c\n"


def test_parse_reads_stdin_and_files(runner, tmp_path):
    result = runner.invoke(main, ["parse", "--text", "-"], input="x = a;\n x & (b)\n")
    assert result.output == "x = a; x & b\n"
    path = tmp_path / "e.cl"
    path.write_text("# a file\n(a | b) & c\n")
    result = runner.invoke(main, ["parse", "--text", "-f", str(path)])
    assert result.exit_code == 0 and result.output == "(a | b) & c\n"
    result = runner.invoke(main, ["parse", "--text", "-f", "-"], input="~~a")
    assert result.output == "~~a\n"


def test_parse_syntax_error_exits_2_with_position(runner):
    result = runner.invoke(main, ["parse", "male &"])
    assert result.exit_code == 2
    assert "expected an operand" in result.output
    assert "line 1, column 7" in result.output
    assert result.output.rstrip().endswith("^")
    assert "Traceback" not in result.output


def test_parse_error_in_a_file_names_the_file(runner, tmp_path):
    path = tmp_path / "bad.cl"
    path.write_text("a &\n(b")
    result = runner.invoke(main, ["parse", "-f", str(path)])
    assert result.exit_code == 2
    assert f"{path}: unexpected end of input" in result.output
    assert "line 2, column 3" in result.output


@pytest.mark.parametrize(
    "args, words",
    [
        ([], "give an EXPRESSION"),
        (["a", "-f", "x.cl"], "not both"),
        (["--json", "--text", "a"], "one of --json and --text"),
        (["-f", "/nonexistent/x.cl"], "cannot read"),
    ],
)
def test_parse_usage_errors_exit_2(runner, args, words):
    result = runner.invoke(main, ["parse", *args])
    assert result.exit_code == 2
    assert words in result.output


def test_parse_definition_error_exits_2(runner):
    result = runner.invoke(main, ["parse", "--expand", "a = b & a; a"])
    assert result.exit_code == 2
    assert "refer to themselves: a -> a" in result.output


def test_parse_deep_expression_summarises(runner):
    result = runner.invoke(main, ["parse", "--max-depth", "3", "~" * 10_000 + "a"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert len(lines) == 4  # depths 0, 1, 2, then the summary at depth 3
    assert lines[-1].endswith("Not  @1:4 ... (9997 more nodes below; raise --max-depth)")


def test_parse_json_deep_expression(runner):
    result = runner.invoke(main, ["parse", "--json", "(" * 3000 + "a" + ")" * 3000])
    assert result.exit_code == 0
    assert json.loads(result.output)["body"]["name"] == "a"


def test_check_reports_every_error(runner, tmp_path):
    good = tmp_path / "good.cl"
    good.write_text("happy = smiling & ~eyeglasses;\nhappy & male\n")
    bad = tmp_path / "bad.cl"
    bad.write_text("a = b & ;\nc = (d;\nc | a")
    result = runner.invoke(main, ["check", str(good), str(bad)])
    assert result.exit_code == 2
    out = result.output
    assert f"{good}: ok" in out
    assert f"{bad}:1:9: error: unexpected ';'" in out
    assert f"{bad}:2:7: error: unexpected ';'" in out
    assert "2 file(s) checked, 1 with errors, 2 error(s)" in out


def test_check_json_and_missing_file(runner, tmp_path):
    bad = tmp_path / "bad.cl"
    bad.write_text("x = y; y = x; x")
    result = runner.invoke(main, ["check", "--json", str(bad), str(tmp_path / "missing.cl")])
    assert result.exit_code == 2
    records = json.loads(result.output)
    assert records[0] == {"file": str(bad), "line": 1, "column": 1, "kind": "NameResolutionError",
                          "message": "definitions refer to themselves: x -> y -> x"}
    assert records[1]["kind"] == "UsageError" and "cannot read" in records[1]["message"]


def test_check_resolve_compiles_each_valid_program_against_the_models(runner, tmp_path):
    files = {"good.cl": "happy = smiling & ~eyeglasses;\nhappy & male\n",
             "args.cl": "# a comment\nred & position(0.5)\n",
             "domains.cl": "red & smiling",
             "shadow.cl": "red = circle; red",
             "syntax.cl": "foo &"}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    paths = [str(tmp_path / name) for name in files]
    plain = runner.invoke(main, ["check", *paths[:-1]])  # the text alone: all four are valid
    assert plain.exit_code == 0 and plain.output.count(": ok") == 4
    result = runner.invoke(main, ["check", "--resolve", *paths])
    assert result.exit_code == 2
    out = result.output
    assert f"{paths[0]}: ok" in out
    assert f"{paths[1]}:2:7: error: position takes 2 argument(s) (x, y), got 1\n  red & position(0.5)\n        ^" in out
    assert (f"{paths[2]}: error: the concepts come from different domains and cannot be composed: "
            "red (scenes), smiling (faces)") in out
    assert f"{paths[3]}:1:1: error: definition 'red' shadows the concept color.red (scenes); rename it" in out
    assert f"{paths[4]}:1:6: error: unexpected end of input" in out  # a syntax error is reported, not compiled
    assert "5 file(s) checked, 4 with errors, 4 error(s)" in out
    records = json.loads(runner.invoke(main, ["check", "--resolve", "--json", paths[1]]).output)
    assert records == [{"file": paths[1], "line": 2, "column": 7, "kind": "ExpressionError",
                        "message": "position takes 2 argument(s) (x, y), got 1"}]
    result = runner.invoke(main, ["check", "--models", str(tmp_path), paths[0]])
    assert result.exit_code == 2 and "--models is an option of --resolve" in result.output


def test_check_valid_stdin(runner):
    result = runner.invoke(main, ["check", "-"], input="a & b\n")
    assert result.exit_code == 0 and result.output == "<stdin>: ok\n"


def test_module_entry_point_exits_2_without_traceback():
    proc = subprocess.run([sys.executable, "-m", "conceptlang", "parse", "a || b"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "unexpected '|'" in proc.stderr


def test_tree_positions_match_parse():
    program = parse("x & y")
    assert (program.body.terms[1].span.line, program.body.terms[1].span.column) == (1, 5)
