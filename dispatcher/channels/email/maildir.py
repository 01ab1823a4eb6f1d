"""A local Maildir as the transport: the demo default, nothing leaves the machine."""

from __future__ import annotations

import itertools
import math
import os
import socket
import time
from pathlib import Path

from dispatcher.channels.base import Reply
from dispatcher.channels.email.transport import MailTransport, OutgoingMail


class MaildirTransport(MailTransport):
    """Writes each message into a local Maildir: the demo default, nothing leaves the machine.

    The letters carry supporters' names and addresses, so the Maildir is its owner's alone:
    folders 0700 and messages 0600 whatever the umask (``mailbox.Maildir`` writes 0644 files).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        for folder in (path, path / "tmp", path / "new", path / "cur"):
            self._private_folder(folder)
        # Unique names as Maildir asks: time, process, a counter and the host (no '/' or ':').
        self._host = socket.gethostname().replace("/", "\\057").replace(":", "\\072")
        self._count = itertools.count()

    @staticmethod
    def _private_folder(folder: Path) -> None:
        """Create ``folder`` for its owner only; one left open by an older version is closed."""
        try:
            folder.mkdir(mode=0o700, parents=True)
        except FileExistsError:
            if folder.stat().st_uid != os.geteuid():
                return  # not ours to change
        folder.chmod(0o700)

    async def send(self, mail: OutgoingMail, start_by: float = math.inf) -> Reply:
        name = f"{time.time_ns()}.P{os.getpid()}Q{next(self._count)}.{self._host}"
        temporary, final = self.path / "tmp" / name, self.path / "new" / name
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as file:
            os.fchmod(fd, 0o600)  # exactly, even under a umask that takes the owner's bits
            file.write(mail.data)
        os.rename(temporary, final)  # readers see whole messages only (Maildir's tmp -> new)
        return Reply(250, f"written to {final}")
