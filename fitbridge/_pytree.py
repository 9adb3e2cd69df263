"""Frozen dataclasses registered as JAX pytrees.

Fields are pytree leaves (differentiable, may be traced), except fields declared with
``static()``, which are hashable configuration (shapes, names) and part of the treedef.
Updates go through ``replace``.
"""

from __future__ import annotations

import dataclasses

import jax

__all__ = ["pytree_dataclass", "static"]


def static(default, **kwargs):
    """A dataclass field that is static under jit (it determines shapes or code paths)."""
    return dataclasses.field(default=default, metadata={"static": True}, **kwargs)


def pytree_dataclass(cls):
    """Make `cls` a frozen dataclass registered as a pytree (see module docstring).

    Class-level metadata (state names, bounds) lives in ``ClassVar`` annotations, which
    dataclasses ignore.
    """
    cls = dataclasses.dataclass(frozen=True)(cls)
    fields = dataclasses.fields(cls)
    data = [f.name for f in fields if not f.metadata.get("static")]
    meta = [f.name for f in fields if f.metadata.get("static")]
    jax.tree_util.register_dataclass(cls, data_fields=data, meta_fields=meta)
    cls.replace = lambda self, **changes: dataclasses.replace(self, **changes)
    cls.field_names = tuple(data)
    return cls
