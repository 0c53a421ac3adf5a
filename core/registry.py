"""The plugin host: pluggy manager, lazy idempotent loading, and the validated registry of
explainers, adapters, metrics and target kinds (one table per hook, names unique, each entry with its plugin).

Built-in plugins are the hookimpl modules found in the ``vexplain.adapters`` and ``vexplain.plugins``
packages (see ``builtin_plugins``), registered after entry points exactly like third-party ones;
dropping a module with ``@hookimpl`` functions into ``plugins/`` is all it takes to ship a method. A third-party plugin that fails to import is recorded in ``failures`` and warned
about, never fatal. ``VEXPLAIN_DISABLE_PLUGINS`` (comma-separated) blocks plugins by name.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import os
import pkgutil
import re
import threading
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import pluggy

from . import hookspecs
from .errors import PluginError, UnknownMethod, did_you_mean, one_line

if TYPE_CHECKING:
    from .adapter import ModelAdapter

BUILTIN_PACKAGES: tuple[str, ...] = ("vexplain.adapters", "vexplain.plugins")
ENTRY_POINT_GROUP = "vexplain"
DISABLE_VARIABLE = "VEXPLAIN_DISABLE_PLUGINS"
_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
_ALIAS_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_+\- ]*$")


def name_key(text: str) -> str:
    """The form a method name or alias is matched in: case-folded, with ``-``, ``_`` and spaces
    dropped (``Grad-CAM``, ``grad_cam`` and ``gradcam`` are one key; ``+`` is kept, so
    ``gradcam++`` is not ``gradcam``)."""
    return re.sub(r"[-_ ]", "", text.casefold())


def builtin_module_names() -> tuple[str, ...]:
    """Public modules of the built-in packages, found on disk without importing any of them."""
    names: list[str] = []
    for package_name in BUILTIN_PACKAGES:
        package = importlib.import_module(package_name)
        names.extend(
            f"{package_name}.{info.name}"
            for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda info: info.name)
            if not info.name.startswith("_") and not info.ispkg
        )
    return tuple(names)


def builtin_plugins() -> tuple[str, ...]:
    """The built-in plugin modules: those of ``builtin_module_names()`` with ``@hookimpl`` functions (imports them)."""
    return tuple(name for name in builtin_module_names() if _has_hookimpls(importlib.import_module(name)))


def _has_hookimpls(module: object) -> bool:
    marker = f"{hookspecs.PROJECT}_impl"
    return any(hasattr(getattr(module, attribute, None), marker) for attribute in dir(module))


@dataclass(frozen=True)
class Registered:
    """A registered explainer class, metric class or adapter factory and the plugin that gave it."""

    name: str
    obj: Any
    plugin: str


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be loaded, and why."""

    plugin: str
    error: str


class Registry:
    """Owns the plugin manager and the name → entry tables built from it."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._manager: pluggy.PluginManager | None = None
        self._explainers: dict[str, Registered] | None = None
        self._method_keys: dict[str, tuple[str, str]] | None = None  # name_key → (method name, what was declared)
        self._adapters: dict[str, Registered] | None = None
        self._metrics: dict[str, Registered] | None = None
        self._targets: dict[str, Registered] | None = None
        self.failures: list[PluginFailure] = []

    @property
    def manager(self) -> pluggy.PluginManager:
        with self._lock:
            if self._manager is None:
                self._manager = self._load()
            return self._manager

    @property
    def loaded(self) -> bool:
        """Whether plugins have been loaded yet (importing vexplain loads nothing)."""
        return self._manager is not None

    def _load(self) -> pluggy.PluginManager:
        manager = pluggy.PluginManager(hookspecs.PROJECT)
        manager.add_hookspecs(hookspecs)
        for name in _disabled():
            manager.set_blocked(name)
        failures: list[PluginFailure] = []
        for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if manager.is_blocked(entry_point.name) or manager.has_plugin(entry_point.name):
                continue
            try:
                manager.register(entry_point.load(), name=entry_point.name)
                manager.check_pending()  # a hook this version does not know fails this plugin only
            except Exception as error:  # a broken third-party plugin must not break vexplain
                if manager.has_plugin(entry_point.name):
                    manager.unregister(name=entry_point.name)
                failure = PluginFailure(entry_point.name, one_line(error))
                failures.append(failure)
                warnings.warn(f"vexplain plugin '{failure.plugin}' failed to load: {failure.error}", stacklevel=2)
        for module_name in builtin_module_names():
            if not manager.is_blocked(module_name) and not manager.has_plugin(module_name):
                module = importlib.import_module(module_name)
                if _has_hookimpls(module):
                    manager.register(module, name=module_name)
        manager.check_pending()
        self.failures = failures
        return manager

    def register_plugin(self, plugin: object, name: str | None = None) -> str:
        """Add a plugin at run time (tests, notebooks); returns its name. Registry tables are rebuilt.

        Anything invalid (a blocked or taken name, an unknown hook, a bad or duplicate
        registration) raises ``PluginError`` and leaves the registry as it was.
        """
        with self._lock:
            manager = self.manager
            try:
                registered = manager.register(plugin, name=name)
            except (ValueError, pluggy.PluginValidationError) as error:
                raise PluginError(f"cannot register plugin {name or _describe(plugin)}: {one_line(error)}") from None
            if registered is None:
                raise PluginError(f"plugin {name or _describe(plugin)!r} is blocked by {DISABLE_VARIABLE}")
            self._invalidate()
            try:
                manager.check_pending()
                self.explainers()
                self.adapters()
                self.metrics()
                self.target_kinds()
            except Exception as error:
                manager.unregister(name=registered)
                self._invalidate()
                if isinstance(error, pluggy.PluginValidationError):
                    raise PluginError(f"cannot register plugin '{registered}': {one_line(error)}") from None
                raise
            return registered

    def unregister_plugin(self, name: str) -> None:
        with self._lock:
            if self.manager.has_plugin(name):
                self.manager.unregister(name=name)
            self._invalidate()

    def reload(self) -> None:
        """Forget everything; the next use loads entry points and built-ins again."""
        with self._lock:
            self._manager = None
            self._invalidate()

    def _invalidate(self) -> None:
        self._explainers = None
        self._method_keys = None
        self._adapters = None
        self._metrics = None
        self._targets = None

    def _collect(self, hook_name: str, kind: str, validate) -> dict[str, Registered]:
        table: dict[str, Registered] = {}
        hook = getattr(self.manager.hook, hook_name)
        for implementation in hook.get_hookimpls():  # registration order: entry points, then built-ins
            plugin_name = implementation.plugin_name

            def register(obj: object, _plugin: str = plugin_name) -> None:
                name = validate(obj, _plugin)
                if name in table:
                    raise PluginError(
                        f"{kind} '{name}' is registered twice: by plugin '{table[name].plugin}' and by plugin '{_plugin}'; "
                        f"rename one or disable a plugin with {DISABLE_VARIABLE}"
                    )
                table[name] = Registered(name, obj, _plugin)

            arguments = {"register": register}
            try:
                implementation.function(*[arguments[a] for a in implementation.argnames])
            except PluginError:
                raise
            except Exception as error:
                raise PluginError(f"plugin '{plugin_name}' failed in {hook_name}: {one_line(error)}") from error
        return table

    def explainers(self) -> dict[str, Registered]:
        with self._lock:
            if self._explainers is None:
                table = self._collect("register_explainers", "method", _validate_explainer)
                self._method_keys = _method_keys(table)
                self._explainers = table
            return self._explainers

    def method_keys(self) -> dict[str, tuple[str, str]]:
        """``name_key(name or alias)`` → (method name, the name or alias as declared), for every method."""
        with self._lock:
            self.explainers()
            assert self._method_keys is not None
            return self._method_keys

    def adapters(self) -> dict[str, Registered]:
        with self._lock:
            if self._adapters is None:
                collected = self._collect("register_adapters", "adapter", _validate_adapter)
                # highest priority first: the order adapters are tried in, and listed in
                self._adapters = dict(sorted(collected.items(), key=lambda item: -item[1].obj.priority))
            return self._adapters

    def metrics(self) -> dict[str, Registered]:
        with self._lock:
            if self._metrics is None:
                self._metrics = self._collect("register_metrics", "metric", _validate_metric)
            return self._metrics

    def target_kinds(self) -> dict[str, Registered]:
        with self._lock:
            if self._targets is None:
                self._targets = self._collect("register_targets", "target kind", _validate_target)
            return self._targets

    def target_kind(self, name: str) -> Registered:
        from .errors import InvalidTarget

        table = self.target_kinds()
        if not isinstance(name, str) or name not in table:
            hint = did_you_mean(str(name), table) or ""
            raise InvalidTarget(f"unknown target kind {name!r}{hint} (registered: {', '.join(sorted(table))})")
        return table[name]

    def metric(self, name: str) -> Registered:
        from .metric import UnknownMetric

        table = self.metrics()
        if not isinstance(name, str) or name not in table:
            hint = did_you_mean(str(name), table) or ""
            raise UnknownMetric(f"unknown metric {name!r}{hint} (registered: {', '.join(sorted(table))})")
        return table[name]

    def explainer(self, name: str) -> Registered:
        """The method called ``name``: its registered name or one of its aliases, in any case, with
        ``-``/``_``/spaces ignored (``GradCAM``, ``grad-cam``, ``gradcam++``, ``ig``). An unknown name
        raises ``UnknownMethod`` with suggestions drawn from names and aliases."""
        table = self.explainers()
        if isinstance(name, str) and name in table:
            return table[name]
        keys = self.method_keys()
        found = keys.get(name_key(name)) if isinstance(name, str) else None
        if found is None:
            raise UnknownMethod(f"unknown method {name!r}{_method_hint(str(name), keys)} (registered: {', '.join(sorted(table))})")
        return table[found[0]]


def _method_keys(table: Mapping[str, Registered]) -> dict[str, tuple[str, str]]:
    """The lookup table of names and aliases; two methods claiming one key raise like duplicate names."""
    keys: dict[str, tuple[str, str]] = {}
    for name, entry in table.items():
        for declared in (name, *entry.obj.aliases):
            key = name_key(declared)
            owner = keys.get(key)
            if owner is not None and owner[0] != name:
                raise PluginError(
                    f"method alias '{declared}' of '{name}' (plugin '{entry.plugin}') clashes with "
                    f"'{owner[1]}' of '{owner[0]}' (plugin '{table[owner[0]].plugin}'); "
                    f"rename one or disable a plugin with {DISABLE_VARIABLE}"
                )
            keys.setdefault(key, (name, declared))
    return keys


def _method_hint(text: str, keys: Mapping[str, tuple[str, str]]) -> str:
    """' did you mean: ...' naming the methods whose names or aliases are close to ``text``."""
    import difflib

    close = difflib.get_close_matches(name_key(text), list(keys), n=6, cutoff=0.5)
    names = list(dict.fromkeys(keys[key][0] for key in close))[:3]
    return f"; did you mean: {', '.join(names)}?" if names else ""


def _disabled() -> list[str]:
    return [name.strip() for name in os.environ.get(DISABLE_VARIABLE, "").split(",") if name.strip()]


def _describe(obj: object) -> str:
    """A short one-line name for what a plugin handed over (never a multi-line repr)."""
    if isinstance(obj, type):
        return f"class {obj.__module__}.{obj.__qualname__}"
    return f"a {type(obj).__module__}.{type(obj).__qualname__} object"


def _capability_problem(value: object) -> str | None:
    """Why ``value`` is not a collection of known capability names, or None when it is."""
    from .adapter import ALL_CAPABILITIES

    if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list, set, frozenset)):
        return f"must be a tuple of capability names, got {type(value).__name__} {value!r}"
    unknown = [c for c in value if c not in ALL_CAPABILITIES]
    if unknown:
        return f"has unknown capabilities {unknown}; known: {', '.join(ALL_CAPABILITIES)}"
    return None


def _validate_declared(obj: object, plugin: str, base: type, kind: str, entry: str) -> str:
    """What explainers and metrics share: a ``base`` subclass with a lowercase-identifier ``name``,
    known ``requires``, its own ``entry`` method and ``options`` of ``vexplain.Option``; returns the name."""
    from .options import Option

    if not (isinstance(obj, type) and issubclass(obj, base)):
        raise PluginError(f"plugin '{plugin}' registered {_describe(obj)}, which is not a vexplain.{base.__name__} subclass")
    name = obj.name
    if not isinstance(name, str) or not _NAME_PATTERN.match(name):
        label = "" if kind == "method" else f"{kind} "
        raise PluginError(
            f"plugin '{plugin}' registered {label}{obj.__name__} with name {name!r}; "
            f"names are lowercase identifiers (letters, digits, underscores)"
        )
    problem = _capability_problem(obj.requires)
    if problem:
        raise PluginError(f"{kind} '{name}' from plugin '{plugin}': requires {problem}")
    if getattr(obj, entry) is getattr(base, entry):
        raise PluginError(f"{kind} '{name}' from plugin '{plugin}' does not implement {entry}()")
    options = obj.options
    if not isinstance(options, Mapping) or not all(
        isinstance(k, str) and k.isidentifier() and isinstance(v, Option) for k, v in options.items()
    ):
        raise PluginError(f"{kind} '{name}' from plugin '{plugin}': options must map identifiers to vexplain.Option")
    return name


def _validate_explainer(obj: object, plugin: str) -> str:
    from .explainer import Explainer

    name = _validate_declared(obj, plugin, Explainer, "method", "attribute")
    aliases = obj.aliases
    if (
        isinstance(aliases, (str, bytes))
        or not isinstance(aliases, (tuple, list))
        or not all(isinstance(a, str) and _ALIAS_PATTERN.match(a) for a in aliases)
    ):
        raise PluginError(
            f"method '{name}' from plugin '{plugin}': aliases must be a tuple of names (letters, digits, "
            f"'_', '-', '+', spaces; starting with a letter); got {aliases!r}"
        )
    return name


def _validate_metric(obj: object, plugin: str) -> str:
    from .metric import NEEDS, Metric

    name = _validate_declared(obj, plugin, Metric, "metric", "evaluate")
    needs = obj.needs
    if isinstance(needs, (str, bytes)) or not isinstance(needs, (tuple, list)) or not set(needs) <= set(NEEDS):
        raise PluginError(f"metric '{name}' from plugin '{plugin}': needs must be a tuple of {', '.join(NEEDS)}; got {needs!r}")
    if not isinstance(obj.headline, str) or not obj.headline or not isinstance(obj.higher_is_better, bool):
        raise PluginError(f"metric '{name}' from plugin '{plugin}': headline must name a value and higher_is_better be a bool")
    return name


def _validate_target(obj: object, plugin: str) -> str:
    from .targets import Target

    if not (isinstance(obj, type) and issubclass(obj, Target)):
        raise PluginError(f"plugin '{plugin}' registered {_describe(obj)}, which is not a vexplain.targets.Target subclass")
    name = obj.name
    if not isinstance(name, str) or not _NAME_PATTERN.match(name):
        raise PluginError(
            f"plugin '{plugin}' registered target kind {obj.__name__} with name {name!r}; "
            f"names are lowercase identifiers (letters, digits, underscores)"
        )
    if obj.score is Target.score:
        raise PluginError(f"target kind '{name}' from plugin '{plugin}' does not implement score()")
    return name


def _validate_adapter(obj: object, plugin: str) -> str:
    missing = [a for a in ("name", "priority", "accepts", "adapt") if not hasattr(obj, a)]
    if missing:
        raise PluginError(f"plugin '{plugin}' registered adapter factory {_describe(obj)} without {', '.join(missing)}")
    name = obj.name
    if not isinstance(name, str) or not _NAME_PATTERN.match(name):
        raise PluginError(
            f"plugin '{plugin}' registered an adapter named {name!r}; names are lowercase identifiers "
            f"(letters, digits, underscores)"
        )
    if isinstance(obj.priority, bool) or not isinstance(obj.priority, (int, float)):
        raise PluginError(f"adapter '{name}' from plugin '{plugin}': priority must be a number, got {obj.priority!r}")
    not_callable = [a for a in ("accepts", "adapt") if not callable(getattr(obj, a))]
    if not_callable:
        raise PluginError(f"adapter '{name}' from plugin '{plugin}': {', '.join(not_callable)} must be callable")
    problem = _capability_problem(getattr(obj, "capabilities", ()))
    if problem:
        raise PluginError(f"adapter '{name}' from plugin '{plugin}': capabilities {problem}")
    return name


REGISTRY = Registry()


def methods_supported_by(adapter: "ModelAdapter") -> list[str]:
    """Names of the registered methods whose required capabilities the adapter has."""
    return sorted(
        name for name, entry in REGISTRY.explainers().items() if all(adapter.supports(c) for c in entry.obj.requires)
    )
