"""A method's resumable state, complete by construction.

An interrupted run must resume to the result it would have had.  A plug-in author who keeps
a counter in an attribute and forgets ``state_dict`` used to get a run that resumed silently
wrong and was stored as finished.  Two rules close that gap:

* **Saved by default** (as timm's schedulers save their ``__dict__``): the default
  :meth:`~mlrsnet.harness.contract.Method.state_dict` is every attribute set on the method
  instance, except the run context, the hyper-parameters (both rebuilt from the run's cell)
  and the names a method lists in ``transient`` (timings, hook handles).  Values are
  exported in a form ``torch.load(weights_only=True)`` reads back: numbers, strings,
  ``None``, tensors, lists / tuples / dicts of those, named tuples and dataclasses (as their
  fields), ``torch.Generator`` (its state) and any object with ``state_dict`` /
  ``load_state_dict`` (modules, optimisers, torch schedulers: their state dict).  Anything
  else is refused when the first epoch checkpoint is written, naming the attribute and the
  two fixes.
* **Checked on resume**: the loop stores a :func:`fingerprint` of every such attribute with
  each epoch checkpoint; after a resumed method has been bound and given its saved state,
  the fingerprint must be the same, or the run stops with :class:`IncompleteStateError`
  naming the attributes its ``state_dict`` missed (before any result is stored).  This also
  checks methods that write their own ``state_dict``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor

from mlrsnet.errors import UserError

#: Attributes of every method that are not resumable state: the run it is bound to and its
#: hyper-parameters, both rebuilt from the cell when a run resumes.
NOT_STATE = ("run", "hparams")

_PLAIN = (type(None), bool, int, float, str)


class StateError(UserError):
    """A method attribute the default ``state_dict`` cannot save."""


class IncompleteStateError(UserError):
    """A resumed method whose state differs from the one it was checkpointed with."""


def state_attributes(method: Any) -> dict[str, Any]:
    """The attributes that make up ``method``'s resumable state, by name."""
    skip = set(NOT_STATE) | set(getattr(method, "transient", ()))
    return {k: v for k, v in vars(method).items() if k not in skip}


def _is_namedtuple(value: Any) -> bool:
    return isinstance(value, tuple) and hasattr(value, "_fields")


def export_value(value: Any, where: str) -> Any:
    """``value`` in a form ``torch.load(weights_only=True)`` restores (see the module doc);
    :class:`StateError` naming ``where`` for anything else."""
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, Tensor):
        return value.detach().clone()
    if isinstance(value, torch.Generator):
        return value.get_state()
    if _is_namedtuple(value):
        return tuple(export_value(v, f"{where}.{f}") for f, v in zip(value._fields, value, strict=True))
    if isinstance(value, list | tuple):
        return type(value)(export_value(v, f"{where}[{i}]") for i, v in enumerate(value))
    if isinstance(value, dict):
        return {k: export_value(v, f"{where}[{k!r}]") for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: export_value(getattr(value, f.name), f"{where}.{f.name}")
                for f in dataclasses.fields(value)}
    if callable(getattr(value, "state_dict", None)) and callable(getattr(value, "load_state_dict", None)):
        return export_value(value.state_dict(), f"{where}.state_dict()")
    raise StateError(
        f"attribute {where} holds a {type(value).__name__}, which the default state_dict cannot "
        "save. Keep resumable state in numbers, strings, tensors, lists, dicts, dataclasses or "
        "objects with state_dict/load_state_dict; list attributes that are not state (timings, "
        "handles) in the method's `transient`; or write the method's own state_dict and "
        "load_state_dict.")


def import_value(current: Any, saved: Any) -> Any:
    """The value an attribute takes back from ``saved``, given what it holds now: objects with
    ``load_state_dict`` and generators are restored in place, tensors come back on the device
    of the tensor they replace, named tuples and dataclasses as their own type."""
    if current is not None and callable(getattr(current, "load_state_dict", None)) \
            and not isinstance(current, Tensor):
        current.load_state_dict(saved)
        return current
    if isinstance(current, torch.Generator):
        current.set_state(saved)
        return current
    if isinstance(saved, Tensor):
        return saved.to(current.device) if isinstance(current, Tensor) else saved
    if _is_namedtuple(current) and isinstance(saved, tuple | list) and len(saved) == len(current):
        return type(current)(*(import_value(c, s) for c, s in zip(current, saved, strict=True)))
    if dataclasses.is_dataclass(current) and not isinstance(current, type) and isinstance(saved, Mapping):
        return dataclasses.replace(current, **{k: import_value(getattr(current, k, None), v)
                                               for k, v in saved.items()})
    if isinstance(saved, dict):
        old = current if isinstance(current, dict) else {}
        return {k: import_value(old.get(k), v) for k, v in saved.items()}
    if isinstance(saved, list | tuple) and not _is_namedtuple(saved):
        old = current if isinstance(current, list | tuple) and len(current) == len(saved) else [None] * len(saved)
        return type(saved)(import_value(c, s) for c, s in zip(old, saved, strict=True))
    return saved


def default_state_dict(method: Any) -> dict[str, Any]:
    """Every state attribute of ``method``, exported (:func:`export_value`)."""
    return {k: export_value(v, f"{type(method).__name__}.{k}") for k, v in state_attributes(method).items()}


def default_load_state_dict(method: Any, state: Mapping[str, Any]) -> None:
    """Restore what :func:`default_state_dict` saved, attribute by attribute."""
    for key, saved in state.items():
        setattr(method, key, import_value(getattr(method, key, None), saved))


# -- the completeness check -------------------------------------------------------------------
def _digest_into(h: Any, value: Any, depth: int, skip_ids: frozenset[int]) -> None:
    """Feed what ``value`` holds into ``h``: a digest that is the same whenever a restored
    value equals the saved one.  Objects that carry no run state (callables, weak references,
    devices, hook handles) and the run's own tensors (``skip_ids``) are left out."""
    if id(value) in skip_ids:
        h.update(b"<run-owned>")
        return
    if isinstance(value, _PLAIN):
        h.update(f"{type(value).__name__}:{value!r};".encode())
    elif isinstance(value, Tensor):
        t = value.detach()
        h.update(f"T{t.dtype}{tuple(t.shape)};".encode())
        h.update(t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
                 if t.numel() else b"")
    elif isinstance(value, torch.Generator):
        h.update(value.get_state().numpy().tobytes())
    elif isinstance(value, list | tuple):
        h.update(f"[{len(value)};".encode())
        for v in value:
            _digest_into(h, v, depth, skip_ids)
    elif isinstance(value, dict):
        h.update(f"{{{len(value)};".encode())
        for k, v in value.items():
            h.update(f"{k!r}=".encode())
            _digest_into(h, v, depth, skip_ids)
    elif isinstance(value, weakref.ReferenceType | torch.device | type) or callable(value) \
            or type(value).__name__ == "RemovableHandle":
        h.update(type(value).__name__.encode())
    elif callable(getattr(value, "state_dict", None)) and callable(getattr(value, "load_state_dict", None)):
        _digest_into(h, value.state_dict(), depth, skip_ids)
    elif dataclasses.is_dataclass(value):
        _digest_into(h, {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}, depth, skip_ids)
    elif depth > 0 and hasattr(value, "__dict__"):
        _digest_into(h, dict(vars(value)), depth - 1, skip_ids)
    else:
        h.update(type(value).__name__.encode())


def fingerprint(method: Any, run_owned: Iterable[Any] = ()) -> dict[str, str]:
    """A digest per state attribute of ``method`` (:func:`state_attributes`), to compare a
    resumed method with the one that was checkpointed.  ``run_owned``: objects the loop
    restores itself (the model's parameters, the optimiser), left out."""
    skip = frozenset(id(o) for o in run_owned)
    out = {}
    for key, value in state_attributes(method).items():
        h = hashlib.sha256()
        _digest_into(h, value, 3, skip)
        out[key] = h.hexdigest()[:16]
    return out


def check_resumed(method: Any, saved: Mapping[str, str], now: Mapping[str, str]) -> None:
    """Refuse a resumed method whose state differs from the checkpointed one
    (:class:`IncompleteStateError` naming the attributes)."""
    differing = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    if differing:
        names = ", ".join(repr(k) for k in differing)
        raise IncompleteStateError(
            f"method {getattr(method, 'name', type(method).__name__)!r} resumed with state that differs "
            f"from the one it was checkpointed with in {names}: its state_dict/load_state_dict do "
            "not capture them, so the resumed run would not be the one that was interrupted. "
            "Remove the method's own state_dict/load_state_dict to save every attribute by default, "
            "save these too, or list attributes that are not state (timings, handles) in its "
            "`transient`. Nothing of this run was stored; delete its checkpoint after the fix.")
