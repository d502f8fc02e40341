from conceptlang.data.scenes import CONTINUAL_FIXED
from conceptlang.evaluation.continual import CONTINUAL_EXPRESSIONS, continual_suite
from conceptlang.syntax import concepts_of


def test_continual_expressions_are_combinations_no_set_contains():
    # set 1: square & purple; set 2: purple; set 3: square. A non-square non-purple pair is new.
    suite = continual_suite()
    for e in suite.entries:
        names = {c.name for c in concepts_of(e.expr)}
        assert CONTINUAL_FIXED["shape"] not in names and CONTINUAL_FIXED["color"] not in names
    triples = [e for e in suite.entries if e.n_concepts == 3]
    assert len(triples) == len(CONTINUAL_EXPRESSIONS) and all(e.operator == "and" for e in triples)
    assert all(any(c.name == "position" for c in concepts_of(e.expr)) for e in triples)
    assert suite.domain == "scenes"
