"""fdatasync without a thread: Linux native AIO (`IOCB_CMD_FDSYNC`), completion through an
eventfd that the Trio loop waits on like any socket.

Why. A commit's fdatasync takes 0.2-1 ms on an SSD, and the loop must run on meanwhile.
In a thread (`_iothread`), the call itself releases the GIL, but the thread needs the GIL
back three times per commit (to take the job, after the syscall, to hand the result
back), and while the loop is busy it gets it only when CPython forces a switch (every 5
ms by default, and not even then if the loop dropped and retook the GIL meanwhile). On
the 2-core VM, at 6,000 single-command lifecycles/s, the thread waited 1.2 ms (median)
and 8.4 ms (p99) for the GIL before it could even start the write: the commit took
several times the disk's time, and the p99 of a command was 30 ms. Here the kernel runs
the fdatasync on its own worker and signals the eventfd when it is done: no thread, no
GIL, and the loop's share is one `io_submit`, one wakeup and one `io_getevents`. Same
load: p99 7 ms, and the loop's CPU per commit is lower too.

What it costs. ctypes calls to three syscalls whose numbers depend on the architecture
(x86_64 and aarch64 here; elsewhere `open_aio` returns None and the log uses its commit
thread). The kernel must support `IOCB_CMD_FDSYNC` (Linux 4.18); where it or the file
system does not, `io_submit` refuses the request (EINVAL) and nothing was submitted:
`AioUnsupported`, the log falls back for good (so it does on any refused submission, a
full AIO quota included: nothing was written by it, so it says nothing about the disk).
A context that cannot be set up (seccomp, `fs.aio-max-nr` exhausted) also means None.
A completion carrying an error is a failed fdatasync: `OSError`, and the log is broken
(never retried), as with `os.fdatasync`.

The wait is shielded from cancellation: a request in flight cannot be called back, and
the commit must know whether its bytes are durable before anyone goes on.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import sys
import weakref

import trio

# (io_setup, io_destroy, io_getevents, io_submit) syscall numbers.
_SYSCALLS = {
    "x86_64": (206, 207, 208, 209),
    "amd64": (206, 207, 208, 209),
    "aarch64": (0, 1, 4, 2),
    "arm64": (0, 1, 4, 2),
}
_IOCB_CMD_FDSYNC = 3
_IOCB_FLAG_RESFD = 1


class AioUnsupported(Exception):
    """`io_submit` refused an AIO fdatasync (kernel, file system, quota); nothing was
    submitted."""


class _Iocb(ctypes.Structure):  # struct iocb, linux/aio_abi.h (little-endian layout)
    _fields_ = [
        ("aio_data", ctypes.c_uint64),
        ("aio_key", ctypes.c_uint32),
        ("aio_rw_flags", ctypes.c_uint32),
        ("aio_lio_opcode", ctypes.c_uint16),
        ("aio_reqprio", ctypes.c_int16),
        ("aio_fildes", ctypes.c_uint32),
        ("aio_buf", ctypes.c_uint64),
        ("aio_nbytes", ctypes.c_uint64),
        ("aio_offset", ctypes.c_int64),
        ("aio_reserved2", ctypes.c_uint64),
        ("aio_flags", ctypes.c_uint32),
        ("aio_resfd", ctypes.c_uint32),
    ]


class _Event(ctypes.Structure):  # struct io_event
    _fields_ = [
        ("data", ctypes.c_uint64),
        ("obj", ctypes.c_uint64),
        ("res", ctypes.c_int64),
        ("res2", ctypes.c_int64),
    ]


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
    except (OSError, AttributeError):  # pragma: no cover - no dynamic libc
        return None
    return libc


class AioSync:
    """One AIO context and eventfd, for the fdatasyncs of one log (one at a time)."""

    __slots__ = (
        "__weakref__", "_close", "_ctx", "_efd", "_events", "_iocb", "_iocbs", "_nr", "_zero",
    )  # fmt: skip

    def __init__(self, libc: ctypes.CDLL, numbers: tuple[int, int, int, int]) -> None:
        self._nr = numbers
        ctx = ctypes.c_ulong(0)
        if libc.syscall(ctypes.c_long(numbers[0]), ctypes.c_long(1), ctypes.byref(ctx)) != 0:
            raise OSError(ctypes.get_errno(), "io_setup failed")
        try:
            efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        except OSError:
            libc.syscall(ctypes.c_long(numbers[1]), ctx)
            raise
        self._ctx = ctx
        self._efd = efd
        self._iocb = _Iocb(
            aio_lio_opcode=_IOCB_CMD_FDSYNC, aio_flags=_IOCB_FLAG_RESFD, aio_resfd=efd
        )
        self._iocbs = (ctypes.POINTER(_Iocb) * 1)(ctypes.pointer(self._iocb))
        self._events = (_Event * 1)()
        self._zero = _Timespec(0, 0)
        # Destroy the context and close the eventfd when closed or dropped (a log dropped
        # without close, in a crashed test), whichever comes first.
        self._close = weakref.finalize(self, _release, libc, numbers[1], ctx.value, efd)

    def close(self) -> None:
        """Destroy the context and close the eventfd (no request may be in flight)."""
        self._close()

    async def fdatasync(self, fd: int) -> None:
        """fdatasync `fd` on the kernel's worker, waiting for it without blocking the loop.
        `AioUnsupported` if refused at submission (nothing done), `OSError` if it failed."""
        libc = _LIBC
        assert libc is not None
        self._iocb.aio_fildes = fd
        submitted = libc.syscall(
            ctypes.c_long(self._nr[3]), self._ctx, ctypes.c_long(1), self._iocbs
        )
        if submitted != 1:  # nothing was submitted: this says nothing about the disk
            code = ctypes.get_errno() if submitted < 0 else errno.EAGAIN
            raise AioUnsupported(f"io_submit: {os.strerror(code)}")
        with trio.CancelScope(shield=True):  # in flight: it cannot be called back
            while True:
                await trio.lowlevel.wait_readable(self._efd)
                try:
                    os.eventfd_read(self._efd)
                except BlockingIOError:  # a spurious wakeup
                    continue
                got = libc.syscall(
                    ctypes.c_long(self._nr[2]), self._ctx, ctypes.c_long(1), ctypes.c_long(1),
                    self._events, ctypes.byref(self._zero),
                )  # fmt: skip
                if got == 1:
                    break
                if got < 0 and ctypes.get_errno() != errno.EINTR:  # pragma: no cover
                    raise OSError(ctypes.get_errno(), "io_getevents failed")
        res = self._events[0].res
        if res < 0:
            raise OSError(-res, f"fdatasync: {os.strerror(-res)}")


def _release(libc: ctypes.CDLL, destroy: int, ctx: int, efd: int) -> None:
    libc.syscall(ctypes.c_long(destroy), ctypes.c_ulong(ctx))
    os.close(efd)


_LIBC = _libc() if sys.platform == "linux" and hasattr(os, "eventfd") else None


def open_aio() -> AioSync | None:
    """An `AioSync`, or None where this platform, kernel or sandbox cannot have one."""
    numbers = _SYSCALLS.get(platform.machine().lower())
    if _LIBC is None or numbers is None:
        return None
    try:
        return AioSync(_LIBC, numbers)
    except OSError:
        return None
