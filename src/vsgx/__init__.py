"""vsgx: a virtual Intel SGX platform written in Python.

The package is layered (see ``ARCHITECTURE`` in the project's design notes):
``vsgx.arch`` (architectural data) → ``vsgx.crypto`` (measurement, signatures,
keys) → ``vsgx.cpu`` (the SGX processor model) → higher layers.
"""

from __future__ import annotations

__version__ = "0.1.0"

from vsgx.machine import Machine

__all__ = ["Machine", "__version__"]
