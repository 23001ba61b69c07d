"""A region of a segment file, handed to the network layer for sendfile.

Fetch responses never copy log bytes through Python: the log answers a read
with ``FileSlice`` objects and the connection writes them with
``os.sendfile``. A slice keeps a reference to the open file object rather
than a bare descriptor, so a segment deleted by retention while a response is
still being sent stays readable until the last slice is dropped.
"""

from __future__ import annotations

from typing import IO, NamedTuple


class FileSlice(NamedTuple):
    """``length`` bytes of ``file`` starting at byte ``position``."""

    file: IO[bytes]
    position: int
    length: int

    def fileno(self) -> int:
        return self.file.fileno()

    def read(self) -> bytes:
        """The bytes of the slice, for the rare consumer that needs a copy."""
        import os

        return os.pread(self.file.fileno(), self.length, self.position)
