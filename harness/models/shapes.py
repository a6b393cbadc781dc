"""Symbolic shape expressions: parsed with :mod:`ast`, evaluated over a whitelist.

Plugins write shapes such as ``(B, 3, H, W)``, ``C // 2 ** I`` or ``(H - 2) // 2 + 1``
and constraints such as ``H % 16 == 0``. These strings come from third-party code
and end up in CLI messages and result files, so they are never passed to ``eval``:
only names, integer literals, ``+ - * // % **``, unary minus and parentheses are
accepted (plus comparisons and ``and`` in constraints).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from harness.errors import ShapeError

_BINOPS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b,
    ast.Pow: lambda a, b: a**b,
}
_UNARY = {ast.USub: lambda a: -a, ast.UAdd: lambda a: a}
_COMPARE = {
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
}
_SYMBOLS = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.Pow: "**",
    ast.Div: "/",
    ast.MatMult: "@",
    ast.BitAnd: "&",
    ast.BitOr: "|",
    ast.BitXor: "^",
    ast.LShift: "<<",
    ast.RShift: ">>",
}
# Shapes are tensor sizes: anything near this is a typo or an attack (2 ** 2 ** 99).
_MAX_MAGNITUDE = 2**62
_MAX_EXPONENT = 62


def _describe(node: ast.AST) -> str:
    """Name a rejected construct the way a plugin author would recognise it."""
    if isinstance(node, ast.Call):
        return "a function call"
    if isinstance(node, ast.Attribute):
        return "an attribute access"
    if isinstance(node, ast.Subscript):
        return "a subscript"
    if isinstance(node, ast.BinOp):
        return f"the operator '{_SYMBOLS.get(type(node.op), type(node.op).__name__)}'"
    if isinstance(node, ast.Constant):
        return f"the literal {node.value!r} (only integers are allowed)"
    if isinstance(node, ast.Lambda):
        return "a lambda"
    return f"'{type(node).__name__}' syntax"


def _check_arith(node: ast.AST, source: str) -> None:
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        _check_arith(node.left, source)
        _check_arith(node.right, source)
    elif isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        _check_arith(node.operand, source)
    elif isinstance(node, ast.Name):
        if node.id.startswith("_"):
            raise ShapeError(f"expression {source!r}: names may not start with '_' ({node.id!r})")
    elif isinstance(node, ast.Constant) and type(node.value) is int:
        pass
    else:
        raise ShapeError(
            f"expression {source!r} uses {_describe(node)}; "
            "allowed are names, integers, + - * // % ** and parentheses"
        )


def _parse(source: str, what: str) -> ast.expr:
    if not isinstance(source, str):
        raise ShapeError(f"{what} must be a string, got {type(source).__name__} {source!r}")
    try:
        return ast.parse(source.strip(), mode="eval").body
    except SyntaxError as exc:
        raise ShapeError(f"{what} {source!r} is not valid syntax: {exc.msg}") from None


def _names(node: ast.AST) -> frozenset[str]:
    return frozenset(n.id for n in ast.walk(node) if isinstance(n, ast.Name))


def _evaluate(node: ast.AST, env: Mapping[str, int], source: str) -> int:
    """The value of ``node``; every literal, name and intermediate is bounded, so a huge
    literal is refused as surely as a huge product."""
    value = _value(node, env, source)
    if abs(value) > _MAX_MAGNITUDE:
        raise ShapeError(
            f"expression {source!r}: value {value} is beyond 2**62, too large for a tensor size"
        )
    return value


def _value(node: ast.AST, env: Mapping[str, int], source: str) -> int:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        try:
            return env[node.id]
        except KeyError:
            raise ShapeError(f"expression {source!r}: no value for {node.id!r}") from None
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_evaluate(node.operand, env, source))
    left = _evaluate(node.left, env, source)
    right = _evaluate(node.right, env, source)
    if isinstance(node.op, (ast.FloorDiv, ast.Mod)) and right == 0:
        raise ShapeError(f"expression {source!r}: division by zero")
    if isinstance(node.op, ast.Pow) and not 0 <= right <= _MAX_EXPONENT:
        raise ShapeError(f"expression {source!r}: exponent {right} outside 0..{_MAX_EXPONENT}")
    return _BINOPS[type(node.op)](left, right)


@dataclass(frozen=True)
class Expr:
    """One integer-valued size expression, e.g. ``(H - 2) // 2 + 1``."""

    source: str
    _node: ast.expr = field(repr=False, compare=False)

    @classmethod
    def parse(cls, source: str | int) -> Expr:
        if type(source) is int:
            source = str(source)
        node = _parse(source, "expression")
        _check_arith(node, source)
        return cls(ast.unparse(node), node)

    @property
    def names(self) -> frozenset[str]:
        return _names(self._node)

    def evaluate(self, env: Mapping[str, int]) -> int:
        """The size at ``env``: an integer in 0..2**62 (intermediates may be negative)."""
        value = _evaluate(self._node, env, self.source)
        if value < 0:
            raise ShapeError(
                f"expression {self.source!r}: value {value} is negative; a size must be 0 or more"
            )
        return value

    def __str__(self) -> str:
        return self.source


@dataclass(frozen=True)
class Shape:
    """A tensor shape whose entries are :class:`Expr`; written ``(B, 3, H, W)``."""

    dims: tuple[Expr, ...]

    @classmethod
    def parse(cls, source: str | Iterable[str | int]) -> Shape:
        if isinstance(source, Shape):
            return source
        if isinstance(source, str):
            node = _parse(source if source.strip() else "()", "shape")
            items = node.elts if isinstance(node, ast.Tuple) else [node]
            return cls(tuple(Expr.parse(ast.unparse(item)) for item in items))
        try:
            return cls(tuple(Expr.parse(item) for item in source))
        except TypeError:
            raise ShapeError(
                f"shape must be a string like '(B, 3, H, W)' or a tuple, got {source!r}"
            ) from None

    @property
    def names(self) -> frozenset[str]:
        return frozenset().union(*(d.names for d in self.dims))

    def evaluate(self, env: Mapping[str, int]) -> tuple[int, ...]:
        return tuple(d.evaluate(env) for d in self.dims)

    def __str__(self) -> str:
        inner = ", ".join(str(d) for d in self.dims)
        return f"({inner},)" if len(self.dims) == 1 else f"({inner})"


@dataclass(frozen=True)
class Constraint:
    """A condition on dimensions, e.g. ``H % 16 == 0`` or ``H >= 64 and W >= 64``."""

    source: str
    _node: ast.expr = field(repr=False, compare=False)

    @classmethod
    def parse(cls, source: str) -> Constraint:
        node = _parse(source, "constraint")
        cls._check(node, source)
        return cls(ast.unparse(node), node)

    @staticmethod
    def _check(node: ast.expr, source: str) -> None:
        if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.And):
            for value in node.values:
                Constraint._check(value, source)
        elif isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
            for operand in (node.left, *node.comparators):
                _check_arith(operand, source)
        else:
            raise ShapeError(
                f"constraint {source!r} must compare sizes "
                "(==, !=, <, <=, >, >=, joined with 'and')"
            )

    @property
    def names(self) -> frozenset[str]:
        return _names(self._node)

    def holds(self, env: Mapping[str, int]) -> bool:
        return self._holds(self._node, env)

    def _holds(self, node: ast.expr, env: Mapping[str, int]) -> bool:
        if isinstance(node, ast.BoolOp):
            return all(self._holds(v, env) for v in node.values)
        left = _evaluate(node.left, env, self.source)
        for op, comparator in zip(node.ops, node.comparators):
            right = _evaluate(comparator, env, self.source)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True

    def __str__(self) -> str:
        return self.source


class OutputShapeMismatch(Exception):
    """A model returned other shapes than its spec declares: the case's status is
    ``shape_mismatch``, a fault of the model recorded like any other (no HarnessError)."""


def shape_problems(
    declared: Sequence[Shape],
    expected: Sequence[tuple[int, ...]],
    observed: Sequence[tuple[int, ...]],
    batch_size: int,
) -> list[str]:
    """How the shapes a model returned differ from those declared (``expected`` is
    ``declared`` evaluated); empty when they agree. ``harness check`` and every case of
    ``harness run`` judge outputs with this one function."""
    if len(observed) != len(expected):
        return [
            f"at B={batch_size} returned {len(observed)} tensor(s), "
            f"spec declares {len(expected)} output(s)"
        ]
    return [
        f"output {index} at B={batch_size}: expected {shape} = {want}, got {got}"
        for index, (shape, want, got) in enumerate(zip(declared, expected, observed))
        if got != want
    ]
