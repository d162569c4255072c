"""The files a run writes, kept apart from other runs': a lock per output folder (a second run
in the same folder is refused while the first lives; a lock whose process is gone is stale
and removed, by one run at a time: see _guard), the check that a new run does not silently
replace an earlier run's files, and the removal of temporary files that a killed write left
behind.

Which checkpoints a run prunes is the list of files it wrote itself (Trainer.written, stored
in each checkpoint so that a restart continues it); files of other runs are never deleted.
"""
from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import socket
import time
from pathlib import Path

from dpx.io.checkpoint import WriteError, atomic_write

log = logging.getLogger(__name__)

_TEMPORARY = re.compile(r"^\..+\.tmp(\d+)$")  # atomic_write's and RunFiles._take's names
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS}
_GUARD_WAIT = 10.0  # seconds; the guard is held for a few file operations
_NO_LINK = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS}  # FUSE, SMB
_YOUNG = 10.0  # seconds: a lock seen empty this soon after it was made is being written


def alive(pid: int) -> bool:
    """Whether process pid runs on this host (a zombie, dead but not yet reaped by its
    parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:  # Linux: "pid (comm) state ..."
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


@contextlib.contextmanager
def _guard(lock: Path):
    """Hold an exclusive flock on the hidden file <lock>.guard while a run reads the lock's
    holder, removes a stale one and links its own.

    Without it, two runs that both read a stale holder both remove "it": the second removal
    hits the first run's new, live lock, and both runs write the same checkpoints. Only a
    taker under the guard removes a lock, and a lock file cannot be replaced otherwise (links
    fail on an existing name; a run removes only its own), so the holder read under the
    guard is the one removed. flock is released by the kernel when its process dies: the
    guard never goes stale. Its holder removes the file before letting go, so a clean run
    leaves none; a taker that then gets the flock of the removed file finds the name gone or
    naming another file and starts over, so two never hold the same name's guard. Where
    flock is unsupported (some network and FUSE filesystems) the step runs unguarded, as
    before: there two runs breaking one stale lock at once can still both hold it."""
    path = lock.with_name(f"{lock.name}.guard")
    fd = _flock(path)
    try:
        yield
    finally:
        if fd is not None:
            path.unlink(missing_ok=True)  # still held: see above
            os.close(fd)


def _flock(path: Path) -> int | None:
    """A descriptor of path, exclusively flocked while path names that file; None where
    flock is unsupported."""
    deadline = time.monotonic() + _GUARD_WAIT
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise ValueError(f"{path.parent}: another run has been taking the lock "
                                 f"{path.stem} for {_GUARD_WAIT:.0f} s (it holds {path.name}); "
                                 f"if no run is starting there, try again") from None
            time.sleep(0.02)
        except FileNotFoundError:
            pass  # removed by the guard's last holder: open the new one
        except OSError as e:
            os.close(fd)
            if e.errno in _NO_FLOCK:
                return None
            raise
        os.close(fd)


def _create(tmp: Path, path: Path) -> None:
    """path made with tmp's content; FileExistsError if path exists. A hard link makes it
    whole at once; where the filesystem has none (some FUSE mounts, SMB), path is created
    exclusively and then written, and can be seen empty for a moment by a taker where flock
    is unsupported too (under _guard no other taker reads it before it is whole): so a young
    empty lock is not debris (_remove_debris)."""
    try:
        os.link(tmp, path)
        return
    except FileExistsError:
        raise
    except OSError as e:
        if e.errno not in _NO_LINK:
            raise
    content = tmp.read_bytes()
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
    except OSError:
        # ours to remove: no other taker removes a lock this young
        path.unlink(missing_ok=True)
        raise


class RunFiles:
    """The output paths of one run: <save_ckpt>-<step>.pt, <save_ckpt>.pt, `checkpoint` and
    disp_file (lcurve.out)."""

    def __init__(self, save_ckpt: str, disp_file: str):
        self.stem = Path(save_ckpt)
        self.disp = Path(disp_file)
        self.folders = sorted({self.stem.parent.resolve(), self.disp.parent.resolve()})
        self.locks: list[Path] = []

    def make_folders(self) -> None:
        """Create the output folders now, so that a path that cannot be written is an error
        before any work, not after the first interval."""
        for folder in self.folders:
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                raise ValueError(f"cannot write the run's files in {folder}: a part of that path "
                                 f"is a file, not a folder") from None
            except OSError as e:
                raise ValueError(f"cannot create the folder {folder}: {e.strerror}") from None
            if not os.access(folder, os.W_OK):
                raise ValueError(f"cannot write the run's files in {folder}: no permission")

    # ------------------------------------------------------------ lock
    def lock(self) -> None:
        """One lock file per output folder, holding the pid and host of the run."""
        for folder in self.folders:
            path = folder / f".{self.stem.name}.lock"
            self._take(path)
            self.locks.append(path)
        atexit.register(self.unlock)

    def _take(self, path: Path) -> None:
        """Take the lock atomically: the content is written to a temporary file that is then
        hard-linked to the lock's name (which fails if the name exists), so a lock file is
        never seen half-written, and one without an owner (empty, unreadable) is debris. A
        lock found there is judged, and removed, under _guard. Where the filesystem has no
        hard links, the lock is created and then written (_create)."""
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")  # remove_temporaries' pattern
        try:
            tmp.write_text(json.dumps(me))
            with _guard(path):
                for _ in range(3):
                    try:
                        _create(tmp, path)
                        return
                    except FileExistsError:
                        self._check_holder(path)
        except OSError as e:
            raise ValueError(f"{path}: could not take the run lock: {e.strerror}") from None
        finally:
            tmp.unlink(missing_ok=True)
        raise ValueError(f"{path}: could not take the run lock")

    def _check_holder(self, path: Path) -> None:
        """Refuse if a live run holds the lock; remove it if its process is gone or it names
        none (a lock file is complete from the moment it exists: see _take)."""
        try:
            holder = json.loads(path.read_text())
            pid, host = int(holder["pid"]), holder.get("host")
        except FileNotFoundError:
            return  # released meanwhile: take it
        except (OSError, ValueError, TypeError, KeyError):
            self._remove_debris(path)
            return
        same_host = host == socket.gethostname()
        if pid == os.getpid() and same_host:
            path.unlink(missing_ok=True)  # this process's earlier run in the folder
        elif same_host and pid > 0 and not alive(pid):
            log.warning("removed the stale lock %s of run pid %d (that process is gone)",
                        path, pid)
            path.unlink(missing_ok=True)
        elif same_host or host is None:
            started = time.strftime("%Y-%m-%d %H:%M:%S",
                                    time.localtime(float(holder.get("started", 0))))
            raise ValueError(f"{path.parent}: another run (pid {pid}, started {started}) is "
                             f"writing its checkpoints and {self.disp.name} here; wait for it, "
                             f"or give this run another folder (training/save_ckpt, "
                             f"training/disp_file)")
        else:
            raise ValueError(f"{path.parent}: a run on host {host} (pid {pid}) holds {path}; "
                             f"if it is gone, delete that file")

    def _remove_debris(self, path: Path) -> None:
        """An empty or unreadable lock is removed once it is old; a young one may be a run's
        lock made on a filesystem without hard links and not yet written (_create): refused,
        as a live run's is. (A clock that puts its time in the future makes it young.)"""
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return
        if age < _YOUNG:
            raise ValueError(f"{path.parent}: another run is taking the run lock now ({path.name} "
                             f"is still empty or incomplete); wait for it, or give this run "
                             f"another folder (training/save_ckpt, training/disp_file)")
        log.warning("removed the lock %s: it names no run (empty or unreadable)", path)
        path.unlink(missing_ok=True)

    def unlock(self) -> None:
        for path in self.locks:
            try:
                if json.loads(path.read_text()).get("pid") == os.getpid():
                    path.unlink()
            except (OSError, ValueError):
                pass
        self.locks = []

    # ------------------------------------------------------------ earlier runs, leftovers
    def earlier_run(self) -> list[Path]:
        """An earlier run's files that this run would write over: lcurve.out, numbered
        checkpoints of the same name and their link. (The folder's `checkpoint` pointer names
        the newest checkpoint of whichever run wrote last; it is not a result.)"""
        folder = self.stem.parent
        pattern = re.compile(re.escape(self.stem.name) + r"-\d+\.pt$")
        found = [p for p in folder.iterdir() if pattern.match(p.name)] if folder.is_dir() else []
        found.sort(key=lambda p: int(p.name[len(self.stem.name) + 1:-3]))
        for p in (self.disp, folder / f"{self.stem.name}.pt"):
            if p.exists() and (p.is_symlink() or p.stat().st_size > 0):
                found.append(p)
        return found

    def refuse_overwrite(self) -> None:
        """An earlier run's checkpoints here: refused (--restart, another folder or
        --overwrite). Its lcurve.out alone is no run to continue (a workflow's task folder
        run again; dp replaces the file, and dpgen2 has no --overwrite to pass): it is kept
        under a time-stamped name."""
        found = self.earlier_run()
        if found == [self.disp]:
            self._set_aside(self.disp)
            return
        if not found:
            return
        names = ", ".join(p.name for p in found[:6]) + (f" and {len(found) - 6} more"
                                                         if len(found) > 6 else "")
        raise ValueError(f"{self.stem.parent.resolve()} holds an earlier run's files ({names}); "
                         f"a new run would replace them. Continue that run with --restart, "
                         f"train in another folder, or pass --overwrite to replace them")

    @staticmethod
    def _set_aside(path: Path) -> None:
        """path renamed to path.<its mtime as YYYYmmdd-HHMMSS>[-n], never over a file."""
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(path.stat().st_mtime))
        kept, n = path.with_name(f"{path.name}.{stamp}"), 0
        while kept.exists():
            n += 1
            kept = path.with_name(f"{path.name}.{stamp}-{n}")
        path.rename(kept)
        log.info("%s of an earlier run (no checkpoint of it here) kept as %s", path, kept.name)

    def remove_temporaries(self) -> None:
        """Temporary files of a write that was killed (their process is gone)."""
        for folder in self.folders:
            for p in folder.iterdir():
                m = _TEMPORARY.match(p.name)
                if m and not alive(int(m.group(1))):
                    log.warning("removed %s, left by a write that was interrupted", p)
                    p.unlink(missing_ok=True)


def truncate_lcurve(path: Path, last_step: int) -> None:
    """lcurve.out as it was at `last_step`: the rows of later steps (written after the
    checkpoint a restart continues, before the run stopped) removed, so that the file reads
    as one uninterrupted run."""
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = [line for line in lines
            if line.startswith("#") or not line.strip() or int(line.split()[0]) <= last_step]
    if len(kept) != len(lines):
        log.info("%s: removed %d rows after step %d (the restart repeats those steps)", path,
                 len(lines) - len(kept), last_step)
        try:
            atomic_write(path, lambda tmp: Path(tmp).write_text("".join(kept)))
        except OSError as e:
            raise WriteError(f"cannot write {path} (without the rows after step "
                             f"{last_step}): {e.strerror}; it is kept as it was") from None
