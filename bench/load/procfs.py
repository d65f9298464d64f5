"""Reading processes from /proc: the process tree, CPU time, resident and proportional memory.

No psutil: these few files are all the load test needs, and reading them directly keeps the
sampler's own cost (on the machine under test) small and visible.
"""

from __future__ import annotations

import os
from pathlib import Path

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[bytes] | None:
    """The fields of /proc/<pid>/stat after the command name, or None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            stat = file.read()
    except OSError:
        return None
    return stat[stat.rindex(b")") + 2:].split()  # the name may contain spaces and parentheses


def parent_pids() -> dict[int, int]:
    """pid -> ppid for every process visible in /proc."""
    parents = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))) is not None:
            parents[int(entry.name)] = int(fields[1])
    return parents


def descendants(root: int, parents: dict[int, int] | None = None) -> list[int]:
    """`root` and all processes below it."""
    children: dict[int, list[int]] = {}
    for pid, ppid in (parents if parents is not None else parent_pids()).items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds the process has used so far, or None if it is gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_SECOND  # utime + stime


def machine_busy_seconds() -> float:
    """CPU seconds all cores together have spent busy since boot (/proc/stat: all but idle and iowait)."""
    with open("/proc/stat") as file:
        fields = [int(value) for value in file.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / TICKS_PER_SECOND


def _kib(path: str, key: str) -> int | None:
    """The KiB figure on the line starting with `key` in a /proc file, or None if the process is gone."""
    try:
        with open(path) as file:
            for line in file:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def resident_kib(pid: int) -> int | None:
    """VmRSS from /proc/<pid>/status: cheap, but counts shared libraries (torch) in full in each process."""
    return _kib(f"/proc/{pid}/status", "VmRSS:")


def proportional_kib(pid: int) -> int | None:
    """PSS from /proc/<pid>/smaps_rollup: shared pages split between the processes mapping them.

    The kernel walks the whole address space for this, about 20 ms of CPU for a process that has
    imported torch, so the sampler reads it less often than VmRSS."""
    return _kib(f"/proc/{pid}/smaps_rollup", "Pss:")


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"
