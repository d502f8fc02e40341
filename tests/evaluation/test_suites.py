import pytest

from conceptlang.evaluation.suites import (
    SuiteError,
    load_suite,
    load_tuning_list,
    operator_class,
    parse_suite,
    parse_tuning_list,
)
from conceptlang.syntax import parse_expr

SUITE = """\
# scenes suite
@domain scenes

circle                        # single
[and]
red_disc: circle & red
square & blue & large
[held-out, and]
circle & blue & large
[]
~red                          # bare negation
circle & ~red
red | blue
(circle & red) | ~blue
2 * circle & 0.5 * red
big_red = large & red; big_red & circle
"""


def test_entries_names_tags_and_domain():
    s = parse_suite(SUITE, path="x.txt")
    assert s.domain == "scenes" and s.path == "x.txt" and len(s) == 10
    names = [e.name for e in s.entries]
    assert names[0] == "circle" and names[1] == "red_disc"
    assert s.entries[1].text == "circle & red"
    assert [e.tags for e in s.entries[:5]] == [(), ("and",), ("and",), ("held-out", "and"), ()]
    assert s.entries[1].line == 6
    assert s.entries[0].expr == parse_expr("circle")


@pytest.mark.parametrize(
    "text,cls,k",
    [
        ("circle", "single", 1),
        ("3 * circle", "single", 1),
        ("circle & red", "and", 2),
        ("square & blue & large", "and", 3),
        ("(square & blue) & large & small", "and", 4),
        ("~red", "not", 1),
        ("circle & ~red", "not", 2),
        ("circle & ~red & ~large", "not", 3),
        ("red | blue", "or", 2),
        ("red | blue | green", "or", 3),
        ("(circle & red) | ~blue", "nested", 3),
        ("circle & (red | blue)", "nested", 3),
        ("~(red & circle)", "nested", 2),
        ("~~red", "nested", 1),
        ("circle & circle", "and", 1),
        ("position(0.3, 0.7) & position(0.7, 0.3)", "and", 2),
    ],
)
def test_operator_class_and_concept_count(text, cls, k):
    s = parse_suite(text)
    e = s.entries[0]
    assert (e.operator, e.n_concepts) == (cls, k)
    assert operator_class(parse_expr(text)) == cls


def test_definitions_are_expanded_before_classifying():
    s = parse_suite("big_red = large & red; big_red & circle")
    e = s.entries[0]
    assert e.operator == "and" and e.n_concepts == 3


@pytest.mark.parametrize(
    "text,msg",
    [
        ("circle &\n", "line 1"),
        ("circle\nred &&& blue\n", "line 2"),
        ("@domian scenes\ncircle", "unknown header '@domian'"),
        ("@domain\ncircle", "needs one domain name"),
        ("@domain scenes\n@domain faces\ncircle", "second '@domain'"),
        ("[a b]\ncircle", "bad section tag"),
        ("# only comments\n\n", "no expressions"),
        ("x: circle\nx: red", "already used on line 1"),
    ],
)
def test_malformed_suites_name_the_line(text, msg):
    with pytest.raises(SuiteError, match=msg):
        parse_suite(text, path="bad.txt")


def test_suite_errors_exit_2():
    assert SuiteError.exit_code == 2


def test_load_suite_missing_file(tmp_path):
    with pytest.raises(SuiteError, match="not found"):
        load_suite(tmp_path / "nope.txt")


def test_shipped_example_suites_parse():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "examples"
    for name, dom in [("scenes_suite.txt", "scenes"), ("faces_suite.txt", "faces")]:
        s = load_suite(root / name)
        assert s.domain == dom
        classes = {e.operator for e in s.entries}
        assert {"single", "and", "not", "or"} <= classes
        ands = {e.n_concepts for e in s.entries if e.operator == "and"}
        assert {2, 3, 4} <= ands


def test_scenes_suite_holds_every_heldout_combination():
    from pathlib import Path

    from conceptlang.data.scenes import HELDOUT_COMBINATIONS
    from conceptlang.syntax import concepts_of

    s = load_suite(Path(__file__).resolve().parents[2] / "examples" / "scenes_suite.txt")
    held = [frozenset(c.name for c in concepts_of(e.expr)) for e in s.entries if "held-out" in e.tags]
    assert sorted(map(sorted, held)) == sorted(sorted(t) for t in HELDOUT_COMBINATIONS)


def test_a_tuning_list_is_one_suite_per_domain_run():
    text = "# a tuning list\ncircle\n@domain scenes\n[and]\ndisc: circle & red\n@domain faces  # second run\nmale | ~young\n"
    suites = parse_tuning_list(text, "t.txt")
    assert [(s.domain, s.path) for s in suites] == [(None, "t.txt"), ("scenes", "t.txt"), ("faces", "t.txt")]
    assert [[(e.name, e.text, e.operator, e.tags, e.line) for e in s.entries] for s in suites] == [
        [("circle", "circle", "single", (), 2)],
        [("disc", "circle & red", "and", ("and",), 5)],
        [("male | ~young", "male | ~young", "nested", (), 7)],
    ]
    with pytest.raises(SuiteError, match=r"t.txt, line 4: "):
        parse_tuning_list("@domain scenes\ncircle\n@domain faces\nmale &\n", "t.txt")
    with pytest.raises(SuiteError, match="t.txt: no expressions in the list"):
        parse_tuning_list("# nothing\n@domain scenes\n[and]\n", "t.txt")


def test_the_tuning_lists_load():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    domains = {}
    for f in sorted((root / "training").glob("*_tuning.txt")):
        suites = load_tuning_list(f)
        domains[f.name] = [s.domain for s in suites]
        code = [raw.split("#", 1)[0].strip() for raw in f.read_text().splitlines()]
        assert sum(len(s) for s in suites) == sum(1 for c in code if c and c[0] not in "@["), f.name
    assert domains == {"continual_tuning.txt": ["scenes"], "distribution_tuning.txt": ["scenes", "faces"],
                       "fidelity_tuning.txt": ["scenes", "faces"], "heldout_tuning.txt": ["scenes"],
                       "negation_tuning.txt": ["scenes", "faces"], "sampler_tuning.txt": ["scenes", "faces"],
                       "strong_weights_tuning.txt": ["scenes"], "weight3_tuning.txt": ["scenes"]}
    # kept apart from the suites of the same models: no composition of a tuning list is one of
    # their expressions (single concepts are too few to keep apart)
    def texts(*names):
        return {e.text for n in names for e in load_suite(root / "examples" / n).entries}

    joint = texts("scenes_suite.txt", "faces_suite.txt")
    for f in sorted((root / "training").glob("*_tuning.txt")):
        suite_texts = texts("continual_suite.txt") if f.name == "continual_tuning.txt" else joint
        tuned = {e.text for s in load_tuning_list(f) for e in s.entries if e.n_concepts > 1}
        assert not tuned & suite_texts, (f.name, tuned & suite_texts)
