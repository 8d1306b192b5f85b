"""The seam where the call store wraps every model, judge (and later simulator) call.

Every pipeline reaches a model through :func:`wrap_client`: whatever it returns is the client
the whole run uses, so a store installed here sees every call -- the model under test, the
judge, the local server, and any later caller -- without any pipeline knowing about it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_osi.calls.client import CompletionClient
    from pytest_osi.options import Settings


def wrap_client(client: CompletionClient, settings: Settings) -> CompletionClient:
    """The client the run calls through. Today: ``client`` itself (no store yet)."""
    return client
