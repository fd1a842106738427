"""The managers' cards in the weekly run: ``07_manager_card`` executed once per manager.

The run writes each card's data (``managers/<user_id>.json``, what the managers' email is
built from) from the week's figures it already holds, then executes the card notebook for
every manager with papermill.  Cards share few kernels: each kernel executes its share of the
cards one after another, so kpi_lib, pandas and matplotlib are imported once per kernel
rather than once per card, and every card reads the week's snapshot the run wrote.  A card
whose cell fails leaves the kernel usable for the next one; a kernel that dies or times out is
replaced.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from jupyter_client import AsyncKernelManager
from jupyter_core.utils import run_sync

from .card import ManagerCard, carded_managers
from .publish import Stage
from .weekdata import WeekData

CARD_NOTEBOOK = "07_manager_card"
#: A kernel executes at most this many cards (fewer kernels: less start-up; more: more parallel).
CARDS_PER_KERNEL = 4


@dataclass
class CardRun:
    """The outcome of one card: paths are relative to the week folder."""

    manager: str
    name: str
    html: str
    ok: bool
    data: str
    error: str | None = None
    seconds: float = 0.0
    previous: str | None = None  # the last good card kept from the week's previous generation


class SharedKernel(AsyncKernelManager):
    """A kernel that papermill reuses for several notebooks; it closes the clients opened on it."""

    def client(self, **kwargs: Any):
        kc = super().client(**kwargs)
        self.__dict__.setdefault("_opened", []).append(kc)
        return kc

    def close_clients(self) -> None:
        for kc in self.__dict__.pop("_opened", []):
            kc.stop_channels()

    def stop(self) -> None:
        """Close the clients and shut the kernel down (quietly if it already died)."""
        self.close_clients()
        if self.has_kernel:
            try:
                run_sync(self.shutdown_kernel)(now=True)
            except Exception:  # already gone: nothing left to stop
                pass


def write_card_data(data: WeekData, folder: Path) -> list[tuple[str, str]]:
    """Write ``managers/<user_id>.json`` for every manager who gets a card; (user id, name) each."""
    folder = folder / "managers"
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for manager in carded_managers(data):
        card = ManagerCard(data, manager, data.settings.lang)
        (folder / f"{manager}.json").write_text(json.dumps(card.card_data(), ensure_ascii=False, indent=1),
                                                encoding="utf-8")
        out.append((manager, card.name))
    return out


def split_cards(managers: list[str], workers: int) -> list[list[str]]:
    """The managers in at most ``workers`` groups of at most CARDS_PER_KERNEL (one kernel each).

    With more managers than workers × CARDS_PER_KERNEL the groups grow instead.
    """
    if not managers:
        return []
    kernels = max(1, min(workers, math.ceil(len(managers) / CARDS_PER_KERNEL)))
    return [managers[i::kernels] for i in range(kernels)]


def execute_cards(execute: Callable[..., Any], managers: list[str], source: Path, stage: Stage,
                  parameters: dict[str, Any], kernel: str, timeout: int) -> list:
    """Execute the card notebook for each of ``managers`` in turn on one kernel.

    ``execute`` is the run's own :func:`kpi_lib.report.execute_notebook`; what it returns is
    collected in order.  The kernel's connection file stays in the run's private folder.
    """
    from papermill.exceptions import PapermillExecutionError

    (stage.folder / "notebooks" / "managers").mkdir(parents=True, exist_ok=True)

    def start() -> SharedKernel:
        return SharedKernel(kernel_name=kernel, connection_file=str(stage.work / f"kernel-{uuid.uuid4().hex}.json"))

    shared = start()
    done = []
    try:
        for manager in managers:
            result = execute(f"managers/{manager}", source, stage, dict(parameters, manager=int(manager)),
                             kernel, timeout, km=shared)
            shared.close_clients()
            done.append(result)
            if result.error is not None and not isinstance(result.error, PapermillExecutionError):
                shared.stop()  # the kernel died or is stuck in a cell: the next card gets a new one
                shared = start()
    finally:
        shared.stop()
    return done
