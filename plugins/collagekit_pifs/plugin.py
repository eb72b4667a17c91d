"""Entry module of the PIFS plugin: hook implementations only; heavy imports stay inside the hooks."""

from __future__ import annotations
