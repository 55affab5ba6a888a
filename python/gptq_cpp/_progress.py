"""Progress display for long calls: a tqdm bar when tqdm is installed, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, Optional, Union

ProgressFn = Callable[[str, int, int, str], None]
ProgressArg = Union[None, bool, ProgressFn]


class _Display:
    """Called by the library as fn(stage, done, total, item): ``done`` of ``total`` units
    (layers, windows) are finished and ``item`` is being worked on."""

    def __init__(self, unit: str) -> None:
        self._unit = unit
        self._bar: Any = None
        self._last_done = -1
        self._start = time.monotonic()
        try:
            import tqdm  # noqa: F401

            self._tqdm = True
        except ImportError:
            self._tqdm = False

    def __call__(self, stage: str, done: int, total: int, item: str) -> None:
        if self._tqdm:
            if self._bar is None:
                from tqdm.auto import tqdm

                self._bar = tqdm(total=total, desc=stage, unit=self._unit, leave=True)
            self._bar.n = done
            self._bar.set_postfix_str(item, refresh=False)
            self._bar.refresh()
            if total and done >= total:
                self.close()
            return
        # One line per finished unit, so a log shows where the work stood.
        if done != self._last_done and done > 0:
            self._last_done = done
            elapsed = time.monotonic() - self._start
            print(f"{stage}: {self._unit} {done}/{total} done ({elapsed:.1f} s)", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def make(progress: ProgressArg, default: bool, unit: str) -> Optional[ProgressFn]:
    """progress=True: the default display; False: none; None: ``default``; a callable: itself."""
    if progress is None:
        progress = default
    if progress is True:
        return _Display(unit)
    if progress is False:
        return None
    if callable(progress):
        return progress
    raise TypeError(f"progress must be True, False, None or a callable, got {type(progress).__name__}")


def close(fn: Optional[ProgressFn]) -> None:
    if isinstance(fn, _Display):
        fn.close()
