"""How many torch threads to run: the CPUs this process may really use, not the machine's core count.

torch starts one intra-op thread per core of the machine. On a shared node that is often more
threads than the process may use: a Slurm job or a container is pinned to a few cores
(`sched_getaffinity`) or given a CPU quota (cgroup v2 `cpu.max`, v1 `cpu.cfs_quota_us` /
`cpu.cfs_period_us`), and every extra thread then waits at each operator's OpenMP barrier for a
slice the scheduler hands out late. A TG-DFER head step is thousands of small operators, so
over-subscription costs far more than one missing thread (measured in benchmarks/README.md).

    choice = choose_threads(usable_cpus(), cgroup_quota(), os.environ)   # pure: testable with fake inputs
    apply_threads(choice)                                              # once, before any parallel work

The rule, first match wins:
  1. an explicit request (`tgdfer --threads N`, N >= 1);
  2. OMP_NUM_THREADS set by the user (a positive integer), as OpenMP itself would honour it;
  3. the CPUs in the affinity mask, capped by the cgroup quota rounded up (a quota of 1.5 CPUs
     -> 2 threads that each get 75 % of the period; 0.5 -> 1);
  4. only where a load average is passed (`tgdfer demo`, which nobody tunes): 1 thread when the
     1-minute load average already reaches that count, i.e. other processes hold every core, as on
     a machine shared without limits (docs/performance.md: at load average 8-13 on 2 cores a head
     step took 20.6 s on 2 threads and 5.1 s on 1). The threshold is a choice, not a measurement.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class ThreadChoice:
    """The intra-op thread count chosen for torch and why."""

    threads: int  # torch.set_num_threads(threads), >= 1
    reason: str  # one line for logs: which input decided it


def usable_cpus() -> int:
    """CPUs in this process's affinity mask (`taskset`, Slurm, cpusets); os.cpu_count() where there is no mask."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def parse_cpu_max(text: str) -> float | None:
    """cgroup v2 `cpu.max` ("150000 100000", "max 100000") -> CPUs (1.5), None without a limit."""
    parts = text.split()
    if not parts or parts[0] == "max":
        return None
    quota = int(parts[0])
    period = int(parts[1]) if len(parts) > 1 else 100_000
    return quota / period if quota > 0 and period > 0 else None


def parse_cfs(quota_text: str, period_text: str) -> float | None:
    """cgroup v1 `cpu.cfs_quota_us` ("-1" = no limit) and `cpu.cfs_period_us` -> CPUs, None without a limit."""
    quota, period = int(quota_text.strip()), int(period_text.strip())
    return quota / period if quota > 0 and period > 0 else None


def _cgroup_dirs(root: Path, proc_cgroup: str) -> list[tuple[str, Path]]:
    """("v2" | "v1", folder) for this process's cgroup and every ancestor up to the mount, v2 and v1's cpu."""
    out = []
    for line in proc_cgroup.splitlines():
        hier, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hier == "0" and controllers == "":
            kind, mounts = "v2", [root, root / "unified"]
        elif "cpu" in controllers.split(","):
            kind, mounts = "v1", [root / "cpu", root / "cpu,cpuacct", root / "cpuacct,cpu"]
        else:
            continue
        for mount in mounts:
            if not mount.is_dir():
                continue
            # Inside a container the path in /proc may be the host's; the mount itself is then the cgroup
            folder = mount / path.lstrip("/")
            if not folder.is_dir():
                folder = mount
            while True:
                out.append((kind, folder))
                if folder == mount:
                    break
                folder = folder.parent
    return out


def cgroup_quota(root: Path = CGROUP_ROOT, proc_cgroup: str | None = None) -> float | None:
    """The tightest CPU quota (in CPUs) on this process's cgroup or its ancestors; None without one."""
    if proc_cgroup is None:
        try:
            proc_cgroup = Path("/proc/self/cgroup").read_text()
        except OSError:
            return None
    limits = []
    for kind, folder in _cgroup_dirs(Path(root), proc_cgroup):
        try:
            if kind == "v2":
                limit = parse_cpu_max((folder / "cpu.max").read_text())
            else:
                limit = parse_cfs((folder / "cpu.cfs_quota_us").read_text(), (folder / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        if limit is not None:
            limits.append(limit)
    return min(limits) if limits else None


def _positive_int(value: str | None) -> int | None:
    try:
        n = int(str(value).strip())
    except ValueError:
        return None
    return n if n >= 1 else None


def choose_threads(cpus: int, quota: float | None, env: Mapping[str, str], requested: int | None = None,
                   load: float | None = None) -> ThreadChoice:
    """The thread count from the affinity CPUs, the cgroup quota (CPUs or None), the environment and a request.

    `requested` None or 0 means automatic. A malformed OMP_NUM_THREADS ("4,2", "") is ignored.
    `load`: the 1-minute load average (rule 4), or None to leave the machine's load out.
    """
    if requested is not None and requested < 0:
        raise ValueError(f"threads must be >= 0 (0 = automatic), got {requested}")
    if requested:
        return ThreadChoice(requested, f"--threads {requested}")
    omp = _positive_int(env.get("OMP_NUM_THREADS"))
    if omp is not None:
        return ThreadChoice(omp, f"OMP_NUM_THREADS={omp}")
    cpus = max(1, int(cpus))
    if quota is not None and math.ceil(quota) < cpus:
        choice = ThreadChoice(max(1, math.ceil(quota)), f"cgroup CPU quota {quota:g} CPUs (affinity {cpus} CPUs)")
    else:
        choice = ThreadChoice(cpus, f"{cpus} CPUs in the affinity mask" + ("" if quota is None else
                                                                           f" (cgroup quota {quota:g})"))
    if load is not None and choice.threads > 1 and load >= choice.threads:
        return ThreadChoice(1, f"load average {load:.1f} on {choice.threads} usable CPUs: other processes hold "
                               "the cores; --threads N overrides")
    return choice


def auto_threads(requested: int | None = None, shared: bool = False) -> ThreadChoice:
    """`choose_threads` from this process's affinity mask, cgroup quota and environment; with `shared`,
    also from the 1-minute load average (rule 4)."""
    load = os.getloadavg()[0] if shared and hasattr(os, "getloadavg") else None
    return choose_threads(usable_cpus(), cgroup_quota(), os.environ, requested, load)


def apply_threads(choice: ThreadChoice) -> ThreadChoice:
    """Set torch's intra-op threads (and inter-op threads, which torch allows only before any parallel work).

    Inter-op threads are set to the same count once; when parallel work already ran, torch refuses
    that (RuntimeError) and the inter-op pool is left as it is: the intra-op count is what matters here.
    """
    import torch

    torch.set_num_threads(choice.threads)
    try:
        if torch.get_num_interop_threads() != choice.threads:
            torch.set_num_interop_threads(choice.threads)
    except RuntimeError:
        pass
    return choice


# MKL's "conditional numerical reproducibility" mode: AUTO picks the code path for this CPU as
# usual, STRICT makes ?gemm sum in an order that does not depend on the thread count.
MKL_STRICT = "AUTO,STRICT"


def reproducible_blas(environ: dict | None = None) -> str:
    """Ask MKL for thread-count-independent float32 products (MKL_CBWR), unless the user set it.

    MKL reads MKL_CBWR once, at its first call; `import tgdfer` calls this before any tgdfer module
    imports torch, so a process that runs tgdfer gets it. Without it MKL's sgemm sums some shapes in
    another order at 2 threads than at 1 (which shapes depends on the CPU: on an AVX-512 Xeon the
    head's scoring at inference moved by up to 2e-6, on an AVX2 EPYC only 7-row products did).
    A process that ran an MKL product before importing tgdfer keeps MKL's default order
    (docs/training.md, Reproducibility). Returns the value in force.
    """
    env = os.environ if environ is None else environ
    return env.setdefault("MKL_CBWR", MKL_STRICT)


@contextlib.contextmanager
def fixed_threads(n: int = 1) -> Iterator[None]:
    """Run the block at `n` intra-op threads, then restore the count: for small results that are stored.

    A float32 matmul's summation order depends on the thread count for some shapes (MKL picks
    another kernel for e.g. 7 rows at 2 threads: 2e-5 apart on a [7, 256] x [256, 128] product), so
    anything written to a store or compared across processes is computed at one fixed count.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
