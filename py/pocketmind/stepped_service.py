"""What the services whose long work is a stream of JSON-ready dict events share (TaskService, SearchService): the
page's worker calls step() between events, so it can yield, draw progress and pass on a stop.

A subclass sets `self._events` to a generator when it starts a run and checks `self._stop` between items.
"""
from __future__ import annotations

import json
from collections.abc import Iterator


class SteppedService:
    def __init__(self) -> None:
        self._events: Iterator[dict] | None = None  # the run in progress
        self._stop = False

    def stop(self) -> None:
        """Ask the run in progress to end at its next check (each service's docstring says where)."""
        self._stop = True

    def step(self) -> str | None:
        """The next event as JSON (see the service's docstring); None once the run is over or failed."""
        if self._events is None:
            return None
        try:
            event = next(self._events, None)
        except BaseException:
            self._events = None  # a failed run is over: the next step finds nothing
            raise
        if event is None or event["type"] == "done":
            self._events = None
        # allow_nan=False: strict JSON, which the page's JSON.parse reads (a non-finite number fails here, loudly)
        return None if event is None else json.dumps(event, ensure_ascii=False, allow_nan=False)
