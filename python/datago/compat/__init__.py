"""Compatibility with the APIs datago's users come from (Photoroom's datago, Rust and Go editions).

The user-facing names live where those users import them: ``datago.initialize_logging``,
``DatagoClient.get_sample_auto_convert``, ``datago.raw_types``, ``datago.dataset`` (Rust edition),
``from datago import datago`` and ``datago.polyglot`` (Go edition). This package holds the shared
pieces.
"""

from __future__ import annotations

from .photoroom import auto_convert, env_log_level, rust_log_level

__all__ = ["auto_convert", "env_log_level", "rust_log_level"]
