"""Building blocks of the experiment catalogue (`experiments/build.py`), checked as it is written.

A Chaos Toolkit experiment names each activity by module, function and argument names, and
`chaos run` finds out that one is misspelt only when it gets there. Here a step is made from the
activity *function* itself: its module is the public activity module that exports it (the one
`chaos discover` lists, whatever submodule defines it) and its arguments are bound to its
signature, so a misspelt function or argument stops the generation with a message naming it.
The configuration block is made from `HarnessConfig`'s own fields and defaults the same way.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any, Literal

from chaoshelius.config import HarnessConfig
from chaoshelius.discovery import DOMAINS

__all__ = [
    "OK",
    "CatalogueError",
    "Json",
    "action",
    "activity_module",
    "calls",
    "control",
    "env",
    "harness_key",
    "placeholder",
    "probe",
]

Json = dict[str, Any]
Kind = Literal["probe", "action"]
# Every probe of the harness returns a verdict ({"ok": ..., ...}): the tolerance reads it.
OK: Json = {"type": "jsonpath", "path": "$.ok", "expect": True}
# A configuration key's environment variable is HELIUS_<KEY> (the key's own helius_ not doubled),
# except where the key's name is another tool's (chaostoolkit-prometheus reads this one).
ENV_EXCEPTIONS = {"prometheus_base_url": "HELIUS_PROMETHEUS_URL"}


class CatalogueError(ValueError):
    """A step that would fail when run: an unknown activity, or arguments it does not take."""


@functools.cache
def _exports(kind: Kind) -> dict[int, tuple[ModuleType, str]]:
    """id(function) -> (public module, exported name) for every `kind` the harness exports."""
    found: dict[int, tuple[ModuleType, str]] = {}
    for domain in DOMAINS:
        name = f"chaoshelius.{domain}.{kind}s"
        if importlib.util.find_spec(name) is None:
            continue
        module = importlib.import_module(name)
        for exported in getattr(module, "__all__", ()):
            found.setdefault(id(getattr(module, exported)), (module, exported))
    return found


def activity_module(func: Callable[..., Any], kind: Kind) -> tuple[ModuleType, str]:
    """The public module that exports `func` as a `kind` (`chaoshelius.<domain>.<kind>s`, its
    `__all__`), and the name it exports it under: what an experiment must write."""
    try:
        return _exports(kind)[id(func)]
    except KeyError:
        raise CatalogueError(
            f"{getattr(func, '__qualname__', func)!r} is not a {kind} of the harness: no "
            f"chaoshelius.<domain>.{kind}s module exports it in its __all__"
        ) from None


def _bound(func: Callable[..., Any], where: str, arguments: Mapping[str, Any]) -> None:
    """Fail like `chaos run` would, naming the function and the argument, but now; an argument
    only a `**kwargs` would take (a control's) is refused too: it would be silently ignored."""
    signature = inspect.signature(func)
    named = {p.name for p in signature.parameters.values() if p.kind != p.VAR_KEYWORD}
    unknown = sorted(set(arguments) - named)
    try:
        signature.bind(**arguments)
        problem = f"no argument named {', '.join(map(repr, unknown))}" if unknown else ""
    except TypeError as exc:
        problem = str(exc)
    if problem:
        raise CatalogueError(f"{where}: {problem} (arguments {sorted(arguments)})")


def _provider(func: Callable[..., Any], kind: Kind, arguments: Mapping[str, Any]) -> Json:
    module, name = activity_module(func, kind)
    _bound(func, f"{module.__name__}.{name}", arguments)
    return {"type": "python", "module": module.__name__, "func": name, "arguments": arguments}


def probe(name: str, func: Callable[..., Any], **arguments: Any) -> Json:
    """A probe step whose verdict is its `ok`."""
    return {
        "type": "probe",
        "name": name,
        "provider": _provider(func, "probe", arguments),
        "tolerance": OK,
    }


def action(
    name: str, func: Callable[..., Any], after: float | str | None = None, **arguments: Any
) -> Json:
    """An action step, paused `after` seconds (or a `${key}`) once it is done."""
    step: Json = {"type": "action", "name": name, "provider": _provider(func, "action", arguments)}
    if after:
        step["pauses"] = {"after": after}
    return step


def calls(step: Json, func: Callable[..., Any]) -> bool:
    """Whether a python step calls this activity function."""
    provider = step.get("provider", {})
    for kind in ("probe", "action"):
        if id(func) in _exports(kind):
            module, name = _exports(kind)[id(func)]
            return (provider.get("module"), provider.get("func")) == (module.__name__, name)
    return False


def control(name: str, module: ModuleType, **arguments: Any) -> Json:
    """A control: its module, with arguments bound to the module's `configure_control`."""
    provider: Json = {"type": "python", "module": module.__name__}
    if arguments:
        configure = getattr(module, "configure_control", None)
        if configure is None:
            raise CatalogueError(f"{module.__name__} has no configure_control to take arguments")
        _bound(configure, f"{module.__name__}.configure_control", arguments)
        provider["arguments"] = arguments
    return {"name": name, "provider": provider}


def placeholder(key: str) -> str:
    """`${key}`: Chaos Toolkit substitutes the configuration value."""
    return "${" + key + "}"


def env_name(key: str) -> str:
    """The environment variable a configuration key is read from."""
    return ENV_EXCEPTIONS.get(key) or "HELIUS_" + key.upper().removeprefix("HELIUS_")


def env(key: str, default: Any, **extra: Any) -> Json:
    """A configuration value read from the key's environment variable, else `default`."""
    return {"type": "env", "key": env_name(key), "default": default, **extra}


def harness_key(key: str) -> Json:
    """A `HarnessConfig` key as an environment-read configuration value, with the harness's own
    default (an unset list, mapping or optional one: "", which the harness reads as unset)."""
    field = HarnessConfig.model_fields.get(key)
    if field is None:
        raise CatalogueError(f"{key!r} is not a configuration key of HarnessConfig")
    default = field.get_default(call_default_factory=True)
    if field.annotation is int:
        return env(key, default, env_var_type="int")
    return env(key, str(default) if default else "")
