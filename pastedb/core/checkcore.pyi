"""Type stubs for pastedb-check's C passes (pastedb.core.checkcore)."""

from typing import Any, Protocol

LOG: str
TREE: str
WHAT: tuple[str, str, str, str]

class Entry:
    lsn: int
    koff: int
    klen: int
    voff: int
    vlen: int
    vcrc: int
    src: str
    expire_ms: int
    def __init__(self, lsn: int, koff: int, klen: int, voff: int, vlen: int, vcrc: int,
                 src: str = ..., expire_ms: int = ...) -> None: ...
    def ref(self) -> tuple[int, int, int, int, int, int, int]: ...

class _Progress(Protocol):
    def start(self, label: str, total: int) -> None: ...
    def advance(self, n: int) -> None: ...
    def finish(self) -> None: ...

# (start, end, prio, what, key)
_Span = tuple[int, int, int, str, bytes]

def tree_entries(tree: Any) -> tuple[dict[bytes, Entry], int]: ...
def index_values(state: dict[bytes, Entry], seen: dict[tuple[int, int, int], str], buf: Any,
                 ok: str, bad: str, progress: _Progress | None = ..., label: str = ...,
                 window: int = ...) -> tuple[list[tuple[str, bytes, Entry]], list[bytes], int, int]: ...
def owned_twice(chunks: list[int], state: dict[bytes, Entry]) -> list[tuple[_Span, _Span, int, int]]: ...
def state_sums(state: dict[bytes, Entry]) -> tuple[int, int, int]: ...
def referenced_bytes(ranges: list[tuple[int, int]], state: dict[bytes, Entry]) -> int: ...
