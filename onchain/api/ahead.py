"""Pages read again as soon as a block lands. Over the change layout, the first read of a page at
a new block rebuilds the details of the rows it shows (the adapter's exact math over the stored
states: `stored_book.BOOKS`), which the snapshot layout wrote for every row at every block. The
server notes the pages it served; when a market's newest stored block changes, a background
thread reads again those asked within the last `keep_s`, so the next reader of such a page finds
its positions rebuilt. The cost is a page's rebuild per block, and only while someone reads it."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

from onchain.store import api_queries as Q
from onchain.store.db import Store

log = logging.getLogger(__name__)

Heads = tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]


class ReadAhead:
    """The pages served lately (at most `most`, each by its own key), read again in the
    background when the store's newest blocks change (checked every `every_s`)."""

    def __init__(
        self,
        store: Store,
        *,
        every_s: float = 1.0,
        keep_s: float = 120.0,
        most: int = 32,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store, self.every_s, self.keep_s, self.most = store, every_s, keep_s, most
        self._clock = clock
        self._lock = threading.Lock()
        self._reads: OrderedDict[Hashable, tuple[float, Callable[[], object]]] = OrderedDict()
        self._heads: Heads | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def note(self, key: Hashable, read: Callable[[], object]) -> None:
        """A page just served, and how to read it again (its result is dropped)."""
        with self._lock:
            self._reads[key] = (self._clock(), read)
            self._reads.move_to_end(key)
            while len(self._reads) > self.most:
                self._reads.popitem(last=False)

    def tick(self) -> int:
        """Read the recent pages again if a market's newest block changed since the last tick
        (not at the first: nothing was served for an earlier block); how many were read."""
        with self.store.read() as conn:
            heads = Q.heads_of(conn)
        now: Heads = (tuple(sorted(heads.snapshots.items())), tuple(sorted(heads.latest.items())))
        before, self._heads = self._heads, now
        if before is None or before == now or not heads.latest:
            return 0  # only the change layout's pages rebuild anything
        with self._lock:
            since = self._clock() - self.keep_s
            for key in [k for k, (at, _read) in self._reads.items() if at < since]:
                del self._reads[key]
            reads = [read for _at, read in self._reads.values()]
        done, failed = 0, []
        for read in reads:
            try:
                read()
                done += 1
            except Exception as exc:  # the page's next reader meets (and is told) the same
                failed.append(exc)
        if failed:  # one line a block at most
            first = (str(failed[0]).splitlines() or [type(failed[0]).__name__])[0]
            log.warning("reading %d of %d pages again failed: %s", len(failed), len(reads), first)
        return done

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="read-ahead", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.tick()
            except Exception as exc:  # the store away for a moment: the next tick tries again
                log.debug("read-ahead: %s", exc)
