"""Process groups: the ranks of one distributed job recorded as one run.

When the launcher's environment says this process is one rank of a job (torchrun /
``torch.distributed`` elastic agents, ``accelerate launch``, SLURM ``srun``, Open MPI, MPICH), a
top-level run of this process is one rank of a group run. The ranks agree on one run id without
a service of ours: the key of the group (what the launcher gives every rank: its job or
rendezvous id, the restart count, the world size, plus the run's name and its order in the
process) names a file in the store that the first rank to arrive creates (put-if-absent) with a
new run id and the seed; every other rank reads it. Rank 0 writes the run's manifest; every other
rank writes a write-once shard beside it (``shards/<id>/rank-<r>/``).
"""

from __future__ import annotations

import os
import sys

from reprokit._model.protocol import getenv

TYPE_CHECKING = False  # importing typing costs ~2 ms; annotations alone don't need it
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

# Launchers re-launched by replay with the recorded world size (on one host).
RELAUNCHABLE = ("torchrun", "accelerate", "openmpi", "mpich")


class RankInfo:
    """This process's place in a distributed job, as its launcher described it."""

    __slots__ = ("launcher", "rank", "local_rank", "world_size", "local_world_size", "job", "host")

    def __init__(
        self,
        launcher: str,
        rank: int,
        local_rank: int,
        world_size: int,
        local_world_size: int | None,
        job: str,
        host: str,
    ) -> None:
        self.launcher, self.rank, self.local_rank = launcher, rank, local_rank
        self.world_size, self.local_world_size = world_size, local_world_size
        self.job, self.host = job, host

    def group(self) -> dict[str, Any]:
        """What every rank shares: the manifest's ``run.ranks``."""
        return {
            "launcher": self.launcher,
            "world_size": self.world_size,
            "local_world_size": self.local_world_size,
            "job": self.job,
        }

    def mine(self) -> dict[str, Any]:
        """What is this rank's own: the ``run.rank`` of its manifest or shard."""
        return {"rank": self.rank, "local_rank": self.local_rank, "host": self.host}

    def key(self, name: str | None, ordinal: int) -> str:
        """The group's name in the store: the same in every rank, different for every job."""
        import hashlib  # (json and hashlib cost milliseconds at import; most runs are no rank)
        import json

        text = json.dumps([self.launcher, self.job, self.world_size, name, ordinal])
        return hashlib.sha256(text.encode()).hexdigest()


def _int(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name, "")
    return int(raw) if raw.isdigit() else None


def _launcher_process() -> str:
    """The launching process on this host (pid and start time): local ranks share it."""
    ppid = os.getppid()
    try:
        with open(f"/proc/{ppid}/stat", encoding="ascii", errors="replace") as fh:
            started = fh.read().rsplit(")", 1)[-1].split()[19]  # field 22: start time
    except (OSError, IndexError):
        started = "?"
    return f"{_hostname()}:{ppid}:{started}"


def _hostname() -> str:
    try:
        return os.uname().nodename
    except AttributeError:  # pragma: no cover - Windows
        import platform

        return platform.node()


# Each launcher below sets one of these in every rank it starts.
_MARKERS = ("RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "SLURM_PROCID")


def detect(environ: Mapping[str, str] | None = None) -> RankInfo | None:
    """This process's rank, world size and job from its launcher's variables; None when no
    launcher started it as one rank of several."""
    if environ is None and not any(map(getenv, _MARKERS)):
        return None  # no launcher's variable at all: the common case, in a few dict lookups
    env = os.environ if environ is None else environ

    def info(
        launcher: str, rank: int, size: int, job: str, local: str, local_size: str
    ) -> RankInfo:
        here = _int(env, local)
        return RankInfo(
            launcher,
            rank,
            here if here is not None else rank,
            size,
            _int(env, local_size),
            job,
            _hostname(),
        )

    rank, size = _int(env, "RANK"), _int(env, "WORLD_SIZE")
    if rank is not None and size and ("TORCHELASTIC_RUN_ID" in env or "MASTER_ADDR" in env):
        launcher = "accelerate" if any(k.startswith("ACCELERATE_") for k in env) else "torchrun"
        run_id = env.get("TORCHELASTIC_RUN_ID", "")
        # Without --rdzv-id the agent's id is "none": the local agent process tells jobs apart.
        job = run_id if run_id and run_id != "none" else _launcher_process()
        job += f"#{env.get('TORCHELASTIC_RESTART_COUNT', '0')}"
        return info(launcher, rank, size, job, "LOCAL_RANK", "LOCAL_WORLD_SIZE")
    rank, size = _int(env, "OMPI_COMM_WORLD_RANK"), _int(env, "OMPI_COMM_WORLD_SIZE")
    if rank is not None and size and size > 1:
        job = env.get("PMIX_NAMESPACE") or env.get("OMPI_MCA_ess_base_jobid") or _launcher_process()
        local = ("OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE")
        return info("openmpi", rank, size, job, *local)
    rank, size = _int(env, "PMI_RANK"), _int(env, "PMI_SIZE")
    if rank is not None and size and size > 1:
        job = env.get("PMI_KVSNAME") or _launcher_process()
        return info("mpich", rank, size, job, "MPI_LOCALRANKID", "MPI_LOCALNRANKS")
    # Only a job step (srun) is a group: a batch script sees SLURM_NTASKS and SLURM_PROCID=0
    # too, yet runs once.
    step = env.get("SLURM_STEP_ID") or env.get("SLURM_STEPID")
    rank = _int(env, "SLURM_PROCID")
    size = _int(env, "SLURM_STEP_NUM_TASKS") or _int(env, "SLURM_NTASKS")
    if rank is not None and size and size > 1 and env.get("SLURM_JOB_ID") and step:
        job = f"{env['SLURM_JOB_ID']}.{step}"
        return info("slurm", rank, size, job, "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE")
    return None


def distributed_backend() -> str | None:
    """The ``torch.distributed`` backend in use, when the program initialised one."""
    dist = sys.modules.get("torch.distributed")
    try:
        if dist is not None and dist.is_available() and dist.is_initialized():
            return str(dist.get_backend())
    except Exception:
        return None
    return None
