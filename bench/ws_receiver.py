"""The bench's WebSocket client: binds subscriptions and records when each `ping` arrives.

    python bench/ws_receiver.py URL OUTFILE SUBSCRIPTION_ID...   (token in FHIR_BENCH_AUTH)

A separate process, like bench/hook_receiver.py. It opens one socket to URL (e.g.
ws://127.0.0.1:PORT/fhir/websocket) with the handshake's `Authorization` header taken from the
environment, sends `bind <id>` for every subscription (the R4 protocol,
https://hl7.org/fhir/R4/subscription.html#2.46.7.2), waits for every `bound <id>`, prints `ready`,
then appends one line per text message to OUTFILE, flushed at once:

    <receipt time, unix seconds> <message>
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

import aiohttp


async def main(url: str, path: str, ids: list[str]) -> None:
    headers = {"Authorization": os.environ["FHIR_BENCH_AUTH"]}
    async with aiohttp.ClientSession() as session, session.ws_connect(url, headers=headers) as ws:
        for sid in ids:
            await ws.send_str(f"bind {sid}")
        waiting = set(ids)
        with open(path, "a", buffering=1) as out:
            async for msg in ws:
                received = time.time()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                out.write(f"{received:.6f}\t{msg.data}\n")
                if waiting:
                    words = msg.data.split()
                    if words[0] == "bound":
                        waiting.discard(words[1])
                    elif words[0] == "error":
                        print(f"refused: {msg.data}", flush=True)
                        return
                    if not waiting:
                        print("ready", flush=True)
    print("closed", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
