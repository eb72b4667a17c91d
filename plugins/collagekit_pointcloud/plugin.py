"""Entry module of the point-cloud plugin: hook implementations only; heavy imports stay inside the hooks."""

from __future__ import annotations
