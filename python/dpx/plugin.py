"""One registration pattern for every pluggable kind of dpx: descriptors, fittings and losses,
and the input sections that choose them.

The base class of a kind declares `REGISTRY = {}`; every subclass that names a key registers
itself there when it is defined, so adding a kind is defining its class (and importing its
module where the kind's package imports the others). Implementations are keyed by the config
class they are built from (CONFIG); input sections by their first `type` value (TYPES), in the
order they are defined (the first is the default of the input's `type` key).
"""
from __future__ import annotations


class Registered:
    REGISTRY: dict = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "REGISTRY" in vars(cls):  # the base of a kind: it holds the registry
            return
        key = cls.registry_key()
        if key is not None:
            cls.REGISTRY[key] = cls

    @classmethod
    def registry_key(cls):
        """An implementation's key: the config class it names (its own, not an inherited one)."""
        return vars(cls).get("CONFIG")

    @classmethod
    def build(cls, cfg, *args, **kwargs):
        """The registered implementation of cfg's config class, built from cfg."""
        return cls.REGISTRY[type(cfg)](cfg, *args, **kwargs)


class RegisteredSection(Registered):
    """An input section chosen by its `type` key: registered under its first TYPES value."""

    @classmethod
    def registry_key(cls):
        types = vars(cls).get("TYPES")
        return types[0] if types else None

    @classmethod
    def kinds(cls) -> tuple:
        """The section classes of this kind, in the order they were defined."""
        return tuple(cls.REGISTRY.values())
