"""The kernel manager the study runner gives papermill: IPC sockets in a private temporary
directory instead of TCP on localhost, so the kernel neither listens on a port nor prints
its "running over TCP without encryption" warning on the user's screen."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager


class QuietKernelManager(AsyncKernelManager):
    def __init__(self, **kwargs):
        kwargs.setdefault("transport", "ipc")
        kwargs.setdefault("ip", tempfile.mkdtemp(prefix="handlib-kernel-") + "/k")
        super().__init__(**kwargs)

    async def cleanup_resources(self, restart: bool = False) -> None:  # async in AsyncKernelManager
        await super().cleanup_resources(restart=restart)
        if not restart and self.transport == "ipc":
            shutil.rmtree(Path(self.ip).parent, ignore_errors=True)
