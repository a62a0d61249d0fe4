"""A tiny PromQL evaluator for the expression shapes compose/prometheus/alerts.yml uses:
selectors with label matchers, numbers, ``time()``, ``+ - * /``, comparisons as filters,
``on (...)`` one-to-one matching (many-to-many is an error, as in Prometheus), ``and``,
``unless``, ``or``, and ``max|min|sum|count by (...) (...)``. Anything else raises SyntaxError,
so a rule written outside this subset fails its test instead of passing unevaluated.

Precedence follows Prometheus: ``* /`` over ``+ -`` over comparisons over ``and unless``
over ``or``.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass

TOKEN = re.compile(r"\s*(?:(?P<num>\d+(?:\.\d+)?)|(?P<op>==|!=|>=|<=|=~|[-+*/(){},<>=])|"
                   r'(?P<str>"[^"]*")|(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*))')
ARITH = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}
COMPARE = {"==": operator.eq, "!=": operator.ne, ">": operator.gt, "<": operator.lt,
           ">=": operator.ge, "<=": operator.le}
AGG = {"max": max, "min": min, "sum": sum, "count": len}


@dataclass(frozen=True)
class Sample:
    labels: frozenset  # of (name, value), including __name__ for raw series
    value: float

    def label(self, name: str):
        return dict(self.labels).get(name)

    def without_name(self) -> frozenset:
        return frozenset((k, v) for k, v in self.labels if k != "__name__")


def tokenize(text: str) -> list[str]:
    tokens, pos = [], 0
    text = text.strip()
    while pos < len(text):
        match = TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise SyntaxError(f"cannot read {text[pos:pos + 20]!r}")
        tokens.append(match.group(match.lastgroup))
        pos = match.end()
    return tokens


class Evaluator:
    """``Evaluator(series, now).eval(expr)`` -> a float or a list of Samples."""

    def __init__(self, series: list[tuple[str, dict, float]], now: float) -> None:
        self.series = [Sample(frozenset({"__name__": n, **labels}.items()), float(v)) for n, labels, v in series]
        self.now = now

    def eval(self, expr: str):
        self.tokens, self.pos = tokenize(expr), 0
        result = self._or()
        if self.pos != len(self.tokens):
            raise SyntaxError(f"unexpected {self.tokens[self.pos]!r}")
        return result

    # -- parsing helpers
    def _peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _take(self, expected=None):
        token = self._peek()
        if token is None or (expected is not None and token != expected):
            raise SyntaxError(f"expected {expected!r}, found {token!r}")
        self.pos += 1
        return token

    def _labels(self) -> tuple[str, ...]:
        self._take("(")
        names = []
        while self._peek() != ")":
            names.append(self._take())
            if self._peek() == ",":
                self._take(",")
        self._take(")")
        return tuple(names)

    def _matching(self):
        if self._peek() == "on":
            self._take()
            return self._labels()
        return None

    # -- grammar, lowest precedence first
    def _or(self):
        left = self._and()
        while self._peek() == "or":
            self._take()
            on = self._matching()
            left = self._set_op("or", left, self._and(), on)
        return left

    def _and(self):
        left = self._compare()
        while self._peek() in ("and", "unless"):
            op = self._take()
            on = self._matching()
            left = self._set_op(op, left, self._compare(), on)
        return left

    def _compare(self):
        left = self._additive()
        while self._peek() in COMPARE:
            op = self._take()
            on = self._matching()
            left = self._binary(op, left, self._additive(), on)
        return left

    def _additive(self):
        left = self._multiplicative()
        while self._peek() in ("+", "-"):
            op = self._take()
            on = self._matching()
            left = self._binary(op, left, self._multiplicative(), on)
        return left

    def _multiplicative(self):
        left = self._primary()
        while self._peek() in ("*", "/"):
            op = self._take()
            left = self._binary(op, left, self._primary(), None)
        return left

    def _primary(self):
        token = self._take()
        if token == "(":
            value = self._or()
            self._take(")")
            return value
        if re.fullmatch(r"\d+(?:\.\d+)?", token):
            return float(token)
        if token == "time":
            self._take("(")
            self._take(")")
            return float(self.now)
        if token in AGG and self._peek() == "by":
            self._take("by")
            by = self._labels()
            self._take("(")
            inner = self._or()
            self._take(")")
            return self._aggregate(token, by, inner)
        return self._selector(token)

    def _selector(self, name: str) -> list[Sample]:
        matchers = {}
        if self._peek() == "{":
            self._take("{")
            while self._peek() != "}":
                label = self._take()
                self._take("=")
                matchers[label] = self._take().strip('"')
                if self._peek() == ",":
                    self._take(",")
            self._take("}")
        return [s for s in self.series if s.label("__name__") == name
                and all(s.label(k) == v for k, v in matchers.items())]

    # -- semantics
    def _aggregate(self, fn: str, by: tuple[str, ...], samples) -> list[Sample]:
        groups: dict[frozenset, list[float]] = {}
        for s in samples:
            groups.setdefault(frozenset((k, v) for k, v in s.labels if k in by), []).append(s.value)
        return [Sample(key, AGG[fn](values)) for key, values in groups.items()]

    @staticmethod
    def _key(sample: Sample, on) -> frozenset:
        return frozenset((k, v) for k, v in sample.labels if (k in on if on is not None else k != "__name__"))

    def _binary(self, op, left, right, on):
        fn = ARITH.get(op) or COMPARE[op]
        if isinstance(left, float) and isinstance(right, float):
            return float(fn(left, right))
        if isinstance(right, float) or isinstance(left, float):
            vector, scalar, vector_left = (left, right, True) if isinstance(right, float) else (right, left, False)
            out = []
            for s in vector:
                a, b = (s.value, scalar) if vector_left else (scalar, s.value)
                if op in COMPARE:
                    if fn(a, b):
                        out.append(s)
                else:
                    out.append(Sample(s.without_name(), float(fn(a, b))))
            return out
        index: dict[frozenset, Sample] = {}
        for s in right:
            key = self._key(s, on)
            if key in index:
                raise ValueError(f"many-to-many matching on the right-hand side for {sorted(key)}")
            index[key] = s
        seen, out = set(), []
        for s in left:
            key = self._key(s, on)
            if key in seen:
                raise ValueError(f"many-to-many matching on the left-hand side for {sorted(key)}")
            seen.add(key)
            other = index.get(key)
            if other is None:
                continue
            labels = key if on is not None else s.without_name()
            if op in COMPARE:
                if fn(s.value, other.value):
                    out.append(Sample(labels, s.value))
            else:
                out.append(Sample(labels, float(fn(s.value, other.value))))
        return out

    def _set_op(self, op, left, right, on):
        if isinstance(left, float) or isinstance(right, float):
            raise SyntaxError(f"{op} needs vectors on both sides")
        right_keys = {self._key(s, on) for s in right}
        if op == "and":
            return [s for s in left if self._key(s, on) in right_keys]
        if op == "unless":
            return [s for s in left if self._key(s, on) not in right_keys]
        left_keys = {self._key(s, on) for s in left}
        return left + [s for s in right if self._key(s, on) not in left_keys]


def firing(expr: str, series: list[tuple[str, dict, float]], now: float) -> set[frozenset]:
    """The label sets an alert with ``expr`` fires for (a scalar result is an error)."""
    result = Evaluator(series, now).eval(expr)
    if isinstance(result, float):
        raise ValueError("an alert expression must return a vector")
    return {frozenset((k, v) for k, v in s.labels if k != "__name__") for s in result}
