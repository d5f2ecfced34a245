"""`python -m talkturo.voice`: the voice service as a plain process (the container's command,
and how the local platform runs it)."""

from __future__ import annotations

import asyncio
import os

from talkturo.voice.server import serve_forever


def main() -> None:
    asyncio.run(serve_forever(os.environ.get("VOICE_HOST", "0.0.0.0")))  # noqa: S104


if __name__ == "__main__":
    main()
