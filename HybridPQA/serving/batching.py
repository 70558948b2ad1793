"""Searches queued by concurrent requests, run in batches on one worker thread (which owns the cores):
requests that arrive while the model is busy are encoded and searched together."""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from HybridPQA.api import SearchIndex
from HybridPQA.serving.hits import Pieces, describe_hits


class Batcher:
    """Searches queued by concurrent requests, run in batches on one worker thread: a batch takes every
    request waiting (up to `size`), grouped by index and scorer, searched at the largest k asked."""

    def __init__(self, size: int = 32):
        self.size, self.queue, self.loop, self.pieces = size, None, None, {}
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hybridpqa-search")

    async def search(self, index: SearchIndex, name: str, query: str, k: int, scorer: str, detail: bool) -> list[dict]:
        if self.loop is not asyncio.get_running_loop():  # the queue and its drain belong to one event loop
            self.loop, self.queue = asyncio.get_running_loop(), asyncio.Queue()
            self.drain = self.loop.create_task(self._drain())
        done = asyncio.get_running_loop().create_future()
        await self.queue.put((index, name, query, k, (scorer, detail), done))
        return await done

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            while not self.queue.empty() and len(batch) < self.size:
                batch.append(self.queue.get_nowait())
            groups: dict[tuple[str, str], list] = {}
            for item in batch:
                groups.setdefault((item[1], item[4]), []).append(item)
            for (_, (scorer, detail)), items in groups.items():
                k = max(item[3] for item in items)
                try:
                    pieces = self.pieces.setdefault(items[0][1], Pieces())  # only the worker thread uses it
                    found = await loop.run_in_executor(self.worker, describe_hits, items[0][0],
                                                       [item[2] for item in items], k, scorer, detail, pieces)
                except Exception as err:  # noqa: BLE001 - handed to each waiting request, which reports it
                    for item in items:
                        item[5].set_exception(err)
                    continue
                for item, hits in zip(items, found):
                    item[5].set_result(hits[:item[3]])

    def run(self, func, *args):
        """Anything else that uses the model, on the same worker thread."""
        return asyncio.get_running_loop().run_in_executor(self.worker, func, *args)
