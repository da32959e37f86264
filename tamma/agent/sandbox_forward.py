"""Runs *inside* the sandbox (stdlib only, any Python 3.8+): offers the egress proxy's Unix
socket as 127.0.0.1:PORT, the only network the setup step has. Usage: forward.py PORT SOCKET READY_FILE

It is run by whatever python3 the sandbox has, outside Tamma's package, so it imports nothing
of Tamma's: its small `pipe` repeats the one in proxy.py on purpose."""

import asyncio
import contextlib
import sys
from asyncio import StreamReader, StreamWriter


async def pipe(src: StreamReader, dst: StreamWriter) -> None:
    try:
        while True:
            chunk = await src.read(65536)
            if not chunk:
                break
            dst.write(chunk)
            await dst.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.write_eof()


async def main(port: int, socket_path: str, ready: str) -> None:
    async def serve(reader: StreamReader, writer: StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(socket_path)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", port)
    with open(ready, "w") as fh:
        fh.write("ready\n")
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3]))
