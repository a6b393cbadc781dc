"""The symbolic shape language: what it computes and what it refuses."""

import pytest

from harness.errors import ShapeError
from harness.models.shapes import Constraint, Expr, Shape


@pytest.mark.parametrize(
    ("source", "env", "value"),
    [
        ("B", {"B": 7}, 7),
        ("(H - 2) // 2 + 1", {"H": 64}, 32),
        ("(H - 2) // 2 + 1", {"H": 65}, 32),
        ("C // 2 ** I", {"C": 512, "I": 3}, 64),
        ("2 * N", {"N": 21}, 42),
        ("H * 2 ** I", {"H": 4, "I": 3}, 32),
        ("(T - 1) * S + K", {"T": 2, "S": 4, "K": 8}, 12),
        ("-N + 10", {"N": 3}, 7),
        ("T % 4", {"T": 10}, 2),
        ("5", {}, 5),
    ],
)
def test_expression_evaluates_like_python_integer_arithmetic(source, env, value):
    assert Expr.parse(source).evaluate(env) == value


def test_power_binds_tighter_than_floor_division_as_in_python():
    # C // 2 ** I must be C // (2 ** I), not (C // 2) ** I.
    assert Expr.parse("C // 2 ** I").evaluate({"C": 512, "I": 2}) == 128


@pytest.mark.parametrize(
    ("source", "complaint"),
    [
        ("__import__('os').system('true')", "function call"),
        ("os.system", "attribute access"),
        ("x[0]", "subscript"),
        ("H / 2", "operator '/'"),
        ("H @ W", "operator '@'"),
        ("H << 1", "operator '<<'"),
        ("1.5 * H", "literal 1.5"),
        ("'abc'", "literal 'abc'"),
        ("True", "literal True"),
        ("lambda: 1", "lambda"),
        ("[H, W]", "List"),
        ("H if W else 1", "IfExp"),
        ("__class__", "may not start with '_'"),
        ("H ==", "not valid syntax"),
    ],
)
def test_unsafe_or_unsupported_expressions_are_rejected_with_the_reason(source, complaint):
    with pytest.raises(ShapeError, match="expression|syntax") as info:
        Expr.parse(source)
    assert complaint in str(info.value)
    assert source in str(info.value) or "syntax" in str(info.value)


def test_comparison_is_not_a_size_expression():
    with pytest.raises(ShapeError, match="Compare"):
        Expr.parse("H == 2")


@pytest.mark.parametrize(
    ("source", "env", "complaint"),
    [
        ("2 ** 2 ** 99", {}, "exponent"),
        ("2 ** -1", {}, "exponent"),
        ("H // 0", {"H": 3}, "division by zero"),
        ("H % (W - W)", {"H": 3, "W": 1}, "division by zero"),
        ("H * 2", {}, "no value for 'H'"),
        ("N ** 40", {"N": 1000}, "too large"),
    ],
)
def test_evaluation_refuses_undefined_names_and_runaway_values(source, env, complaint):
    with pytest.raises(ShapeError, match=complaint):
        Expr.parse(source).evaluate(env)


@pytest.mark.parametrize(
    ("source", "complaint"),
    [
        ("99999999999999999999", "value 99999999999999999999 is beyond 2**62"),
        ("-N", "value -4 is negative"),
        ("N - 5", "value -1 is negative"),
    ],
)
def test_sizes_beyond_two_to_the_62_or_negative_are_refused_naming_the_expression(
    source, complaint
):
    with pytest.raises(ShapeError) as info:
        Shape.parse(f"(B, {source})").evaluate({"B": 2, "N": 4})
    assert f"expression {source!r}: {complaint}" in str(info.value)


def test_an_intermediate_may_be_negative_when_the_size_is_not():
    assert Expr.parse("10 - N * 2 + 20").evaluate({"N": 8}) == 14


def test_shape_string_parses_into_one_expression_per_axis():
    shape = Shape.parse("(B, 3, (H - 2) // 2 + 1, W)")
    assert [str(d) for d in shape.dims] == ["B", "3", "(H - 2) // 2 + 1", "W"]
    assert shape.names == {"B", "H", "W"}
    assert shape.evaluate({"B": 2, "H": 9, "W": 5}) == (2, 3, 4, 5)


def test_shape_accepts_a_tuple_of_strings_and_ints_and_single_axes():
    assert Shape.parse(("B", 10)).evaluate({"B": 4}) == (4, 10)
    assert Shape.parse("(B,)").evaluate({"B": 4}) == (4,)
    assert Shape.parse("B").evaluate({"B": 4}) == (4,)
    assert str(Shape.parse("(B,)")) == "(B,)"


def test_shape_with_an_unsafe_axis_is_rejected():
    with pytest.raises(ShapeError, match="function call"):
        Shape.parse("(B, len(x))")


def test_constraints_support_chained_comparisons_and_conjunctions():
    c = Constraint.parse("H % 16 == 0 and 64 <= H <= 1024")
    assert c.holds({"H": 64})
    assert not c.holds({"H": 48})
    assert not c.holds({"H": 2048})
    assert c.names == {"H"}


@pytest.mark.parametrize("source", ["H or W", "not H", "H + 1", "f(H) == 1", "H in (1, 2)"])
def test_constraints_must_be_comparisons(source):
    with pytest.raises(ShapeError):
        Constraint.parse(source)
