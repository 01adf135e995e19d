"""Backends: one module per framework, imported only by the worker that runs it."""

from poolconform.backends.base import Backend, BackendSpec, BaseBackend, Unsupported, registry, resolve_backend_names

__all__ = ["Backend", "BackendSpec", "BaseBackend", "Unsupported", "registry", "resolve_backend_names"]
