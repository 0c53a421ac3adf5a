"""Thread safety: which vexplain calls run in parallel, and the locks that serialise the rest.

Two locks, with two purposes:

- **Re-entrant locks on the model of each call** (:func:`one_call_per_model`). ``explain`` and ``evaluate``
  hold it for the whole call, so calls on the same model run one after another: a call flips
  every module to eval mode and back, registers hooks, may replace a layer's output or (the
  randomization metric) redraw weights, and caches per model; none of that may interleave with
  another call on that model. A call holds the locks of ``adapter.exclusive_keys``: for PyTorch
  every module of the model, so two adapters of one module, and two models sharing a submodule,
  are serialised too; an ONNX Runtime adapter has none (sessions are thread-safe and the model
  is never changed). Re-entrant, so ``evaluate`` can call ``explain`` on the same model.
- **One process-wide readers-writer lock over running models** (:data:`MODEL_RUNS`). Tracing a
  model with ``torch.fx`` patches ``torch.nn.Module.__call__`` and ``__getattr__`` for the whole
  process while it runs, and ``torch.onnx.export`` sets process-wide exporter state: any model
  running in another thread at that moment would compute with Proxies or in export mode. So each
  actual model invocation holds the lock *shared* (many run at once), and a trace or an export
  holds it *exclusive* (nothing else runs meanwhile; both are cached, so this happens once per
  model). Shared is taken around each invocation only, never around a whole call, so a thread
  never holds shared while it asks for exclusive.

Calls on different models therefore run in parallel, except while some thread traces or
exports a model for the first time.
"""
from __future__ import annotations

import contextlib
import functools
import threading
import weakref
from typing import Any, Callable, Iterator, TypeVar

_LOCKS: "weakref.WeakKeyDictionary[Any, threading.RLock]" = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()
#: for keys that cannot be weakly referenced: one lock shared by all of them (correct, not parallel)
_UNREFERENCEABLE = threading.RLock()

F = TypeVar("F", bound=Callable[..., Any])


def model_lock(key: Any) -> "threading.RLock":
    """The re-entrant lock of ``key`` (a module, or an adapter), created on first use and dropped
    with the key."""
    with _LOCKS_GUARD:
        return _lock_of(key)


def _lock_of(key: Any) -> "threading.RLock":
    try:
        lock = _LOCKS.get(key)
        if lock is None:
            lock = _LOCKS[key] = threading.RLock()
    except TypeError:  # not weakly referenceable
        return _UNREFERENCEABLE
    return lock


@contextlib.contextmanager
def serialized(adapter: Any) -> Iterator[None]:
    """Holds the locks of all of ``adapter.exclusive_keys`` inside the block, taken in one global
    order (by the locks' ``id``), so two calls whose keys overlap never wait on each other in a cycle."""
    with _LOCKS_GUARD:
        locks = [lock for _, lock in sorted({id(lock): lock for lock in map(_lock_of, adapter.exclusive_keys)}.items())]
    held: list[threading.RLock] = []
    try:
        for lock in locks:
            lock.acquire()
            held.append(lock)
        yield
    finally:
        for lock in reversed(held):
            lock.release()


def one_call_per_model(adapt: Callable[[Any], Any]) -> Callable[[F], F]:
    """Decorates an entry point ``function(model, ...)``: ``model`` is adapted once with ``adapt``
    and the call runs, with the adapter in place of ``model``, under :func:`serialized`."""

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def call(model: Any, *args: Any, **kwargs: Any) -> Any:
            adapter = adapt(model)
            with serialized(adapter):
                return function(adapter, *args, **kwargs)

        return call  # type: ignore[return-value]

    return decorate


class ReadersWriterLock:
    """Many holders of ``shared()`` at once, or one holder of ``exclusive()``.

    Both are re-entrant per thread, and the exclusive holder may also take ``shared()``. A waiting
    writer keeps new readers out (writers are rare here and must not starve), except a thread
    that already holds shared, which gets it again (it would otherwise wait on itself). Asking
    for ``exclusive()`` while holding ``shared()`` raises ``RuntimeError``: two threads doing
    that would wait on each other forever.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer: int | None = None
        self._writer_depth = 0
        self._waiting_writers = 0
        self._local = threading.local()

    def _depth(self) -> int:
        return getattr(self._local, "depth", 0)

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        """Held alongside other readers; waits while a writer holds or waits for the lock."""
        depth = self._depth()
        counted = False
        if depth == 0:
            with self._condition:
                if self._writer != threading.get_ident():
                    while self._writer is not None or self._waiting_writers:
                        self._condition.wait()
                    self._readers += 1
                    counted = True
        self._local.depth = depth + 1
        try:
            yield
        finally:
            self._local.depth = depth
            if counted:
                with self._condition:
                    self._readers -= 1
                    if self._readers == 0:
                        self._condition.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Held alone: waits until no other thread holds the lock in any way."""
        me = threading.get_ident()
        with self._condition:
            if self._writer == me:
                self._writer_depth += 1
            else:
                if self._depth():
                    raise RuntimeError("a thread holding the shared model-run lock asked for it exclusively, which would deadlock; trace or export outside a model call")
                self._waiting_writers += 1
                try:
                    while self._writer is not None or self._readers:
                        self._condition.wait()
                    self._writer, self._writer_depth = me, 1
                finally:
                    self._waiting_writers -= 1
                    if self._writer != me:  # interrupted while waiting: readers it held back may go
                        self._condition.notify_all()
        try:
            yield
        finally:
            with self._condition:
                self._writer_depth -= 1
                if self._writer_depth == 0:
                    self._writer = None
                    self._condition.notify_all()


#: held shared by every model invocation, exclusive by fx traces, ONNX exports and anything else
#: that changes process-wide state the model's computation reads
MODEL_RUNS = ReadersWriterLock()


def running_model() -> contextlib.AbstractContextManager:
    """Around one model invocation (a forward, a forward + backward, a traced graph's run)."""
    return MODEL_RUNS.shared()


def no_model_running() -> contextlib.AbstractContextManager:
    """Around a step that changes process-wide state models read (an fx trace, an ONNX export,
    global precision flags): no other thread runs a model inside the block."""
    return MODEL_RUNS.exclusive()


#: held while code seeds and draws from torch's global generator (``torch.random.fork_rng`` +
#: ``manual_seed``: ``reset_parameters()`` has no generator argument), so two such draws in two
#: threads never interleave; code outside vexplain drawing meanwhile is not held back
GLOBAL_RNG = threading.Lock()
