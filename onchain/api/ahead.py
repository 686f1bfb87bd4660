"""Pages read again as soon as a block lands. Over the change layout, the first read of a page at
a new block rebuilds the details of the rows it shows (the adapter's exact math over the stored
states: `stored_book.BOOKS`), which the snapshot layout wrote for every row at every block. The
server notes the pages it served; when a market's newest stored block changes, a background
thread reads again those asked within the last `keep_s`, so the next reader of such a page finds
its positions rebuilt. The cost is a page's rebuild per block of its market, and only while
someone reads it."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

from sqlalchemy import select

from onchain.store import api_queries as Q
from onchain.store.crud import T_MARKETS
from onchain.store.db import Store

log = logging.getLogger(__name__)


class ReadAhead:
    """The pages served lately (at most `most`, each by its own key, with the market it is of:
    None for every market), read again in the background when the change layout's newest
    block of a market they show changes (checked every `every_s`)."""

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
        # key -> (when served, its market's name or None, how to read it again)
        self._reads: OrderedDict[Hashable, tuple[float, str | None, Callable[[], object]]] = (
            OrderedDict()
        )
        self._heads: dict[int, int] | None = None  # market id -> its latest view's block
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.pages_read = 0  # pages read again so far

    def note(self, key: Hashable, market: str | None, read: Callable[[], object]) -> None:
        """A page just served (of one market, or of every one: None), and how to read it again
        (its result is dropped)."""
        with self._lock:
            self._reads[key] = (self._clock(), market, read)
            self._reads.move_to_end(key)
            while len(self._reads) > self.most:
                self._reads.popitem(last=False)

    def tick(self) -> int:
        """Read again the recent pages of each market whose newest block in the change layout
        changed since the last tick (not at the first: nothing was served for an earlier
        block); how many were read."""
        with self.store.read() as conn:
            heads = Q.heads_of(conn).latest  # the snapshot rows' pages rebuild nothing
            before, self._heads = self._heads, dict(heads)
            if before is None:
                return 0
            moved = {i for i, block in heads.items() if before.get(i) != block}
            if not moved:
                return 0
            names = {
                name
                for i, name in conn.execute(select(T_MARKETS.c.id, T_MARKETS.c.name))
                if i in moved
            }
        with self._lock:
            since = self._clock() - self.keep_s
            for key in [k for k, (at, _m, _read) in self._reads.items() if at < since]:
                del self._reads[key]
            reads = [read for _at, m, read in self._reads.values() if m is None or m in names]
        done, failed = 0, []
        for read in reads:
            if self._stop.is_set():  # the server is stopping: its readers are gone
                break
            try:
                read()
                done += 1
            except Exception as exc:  # the page's next reader meets (and is told) the same
                failed.append(exc)
        self.pages_read += done
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
