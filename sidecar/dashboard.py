"""The dashboard served at / (placeholder until issue 8 lands: no routes yet)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import Api, Route


def routes(api: Api) -> list[Route]:
    """The dashboard's routes (static files and the data it reads)."""
    return []


__all__: list[Any] = ["routes"]
