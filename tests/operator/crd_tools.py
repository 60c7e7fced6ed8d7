"""What the API server does with a TradingBot before the operator sees it, done by hand:
structural-schema defaults, schema validation (jsonschema on `openAPIV3Schema`) and the
`x-kubernetes-validations` CEL rules (cel-python), including transition rules on `oldSelf`."""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "crds" / "tradingbots.tradefleet.io.yaml"
EXAMPLES = ROOT / "crds" / "examples"


@cache
def crd() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CRD_PATH.read_text())
    return loaded


def schema() -> dict[str, Any]:
    version = crd()["spec"]["versions"][0]
    result: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return result


def apply_defaults(obj: Any, node: dict[str, Any] | None = None) -> Any:
    """Fill `default`s like the API server: for absent properties, recursing into objects."""
    node = schema() if node is None else node
    if not isinstance(obj, dict):
        return obj
    out = copy.deepcopy(obj)
    for name, sub in (node.get("properties") or {}).items():
        if name not in out and "default" in sub:
            out[name] = copy.deepcopy(sub["default"])
        if name in out:
            out[name] = apply_defaults(out[name], sub)
    return out


def schema_errors(obj: Any) -> list[str]:
    validator = jsonschema.Draft7Validator(schema())
    return sorted(
        f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(obj)
    )


_env = celpy.Environment()


class _Quantity(celpy.celtypes.StringType):
    """Kubernetes CEL's quantity (k8s.io/apiserver/pkg/cel/library/quantity.go) for cel-python: a
    string that knows its exact value, read by the operator's own `quantity_value`."""

    @property
    def value(self) -> Any:
        from tradingbot_operator.spec import quantity_value

        return quantity_value(str(self))


def _is_quantity(text: Any) -> celpy.celtypes.BoolType:
    from tradingbot_operator.spec import QUANTITY_RE

    return celpy.celtypes.BoolType(bool(QUANTITY_RE.match(str(text))))


def _quantity(text: Any) -> _Quantity:
    if not _is_quantity(text):
        raise ValueError(f"quantity({text!r}): not a quantity")
    return _Quantity(str(text))


def _compare(a: _Quantity, b: _Quantity) -> int:
    return (a.value > b.value) - (a.value < b.value)


_QUANTITY_LIBRARY: dict[str, Any] = {
    "isQuantity": _is_quantity,
    "quantity": _quantity,
    "compareTo": lambda a, b: celpy.celtypes.IntType(_compare(a, b)),
    "isGreaterThan": lambda a, b: celpy.celtypes.BoolType(_compare(a, b) > 0),
    "isLessThan": lambda a, b: celpy.celtypes.BoolType(_compare(a, b) < 0),
    "string": lambda v: celpy.celtypes.StringType(str(v)),
}


@cache
def _program(rule: str) -> Any:
    return _env.program(_env.compile(rule), functions=_QUANTITY_LIBRARY)


def cel_errors(obj: Any, old: Any = None) -> list[str]:
    """Messages of the CEL rules `obj` breaks; transition rules only when `old` is given."""
    errors: list[str] = []
    _walk(schema(), obj, old, old is not None, errors)
    return errors


def _walk(node: dict[str, Any], value: Any, old: Any, has_old: bool, errors: list[str]) -> None:
    for rule in node.get("x-kubernetes-validations", []):
        expr = rule["rule"]
        transition = "oldSelf" in expr
        if transition and not has_old:
            continue
        activation = {"self": celpy.json_to_cel(value)}
        if transition:
            activation["oldSelf"] = celpy.json_to_cel(old)
        result = _program(expr).evaluate(activation)
        if not isinstance(result, celpy.celtypes.BoolType):
            raise AssertionError(f"CEL rule {expr!r} did not evaluate to a bool: {result!r}")
        if not result:
            errors.append(rule.get("message", expr))
    if isinstance(value, dict):
        for name, sub in (node.get("properties") or {}).items():
            if name in value:
                child_has_old = has_old and isinstance(old, dict) and name in old
                _walk(sub, value[name], old.get(name) if child_has_old else None, child_has_old, errors)


def example(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())
    return loaded
