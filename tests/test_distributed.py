"""Multi-rank runs: one run per distributed job (rank 0's manifest, a shard per other rank),
listed as one row, replayed by re-launching the job with its recorded launcher and world size.

The torchrun tests use CPU ``gloo`` ranks and need torch (marked ``torch``)."""

from __future__ import annotations

import json
import sys

import pytest

from reprokit._model.errors import NotReplayable
from reprokit._model.manifest import Manifest
from reprokit._record.group import detect
from reprokit._reexec.execute import group_layout
from reprokit._store.store import Store
from tests.conftest import clean_env, cli, make_repo, run_python

# -- which launcher started this process ---------------------------------------------------------


def test_torchrun_rank_is_detected_with_its_job():
    env = {"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "4",
           "MASTER_ADDR": "127.0.0.1", "TORCHELASTIC_RUN_ID": "job-7"}  # fmt: skip
    info = detect(env)
    assert info is not None
    assert (info.launcher, info.rank, info.world_size) == ("torchrun", 1, 4)
    assert info.job == "job-7#0"


def test_accelerate_is_told_apart_from_torchrun():
    env = {"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "x", "ACCELERATE_MIXED_PRECISION": "no"}
    assert detect(env).launcher == "accelerate"


def test_slurm_and_mpi_ranks_are_detected():
    slurm = {"SLURM_PROCID": "3", "SLURM_NTASKS": "8", "SLURM_JOB_ID": "42", "SLURM_STEP_ID": "1"}
    info = detect(slurm)
    assert (info.launcher, info.rank, info.world_size, info.job) == ("slurm", 3, 8, "42.1")
    ompi = {"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "2", "PMIX_NAMESPACE": "ns"}
    assert (detect(ompi).launcher, detect(ompi).job) == ("openmpi", "ns")
    mpich = {"PMI_RANK": "0", "PMI_SIZE": "2", "PMI_KVSNAME": "kvs_1"}
    assert detect(mpich).launcher == "mpich"


def test_a_plain_process_a_single_task_and_a_batch_script_are_no_group():
    assert detect({}) is None
    one = {"SLURM_PROCID": "0", "SLURM_NTASKS": "1", "SLURM_JOB_ID": "9", "SLURM_STEP_ID": "0"}
    assert detect(one) is None
    # sbatch --ntasks=4: the batch script itself sees these, and runs once (no srun step).
    assert detect({"SLURM_PROCID": "0", "SLURM_NTASKS": "4", "SLURM_JOB_ID": "9"}) is None


def test_the_ranks_of_one_job_share_a_key_and_other_jobs_do_not():
    a = detect({"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "x", "TORCHELASTIC_RUN_ID": "j"})
    b = detect({"RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "x", "TORCHELASTIC_RUN_ID": "j"})
    c = detect({"RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "x", "TORCHELASTIC_RUN_ID": "k"})
    assert a.key("train", 0) == b.key("train", 0) != c.key("train", 0)
    assert a.key("train", 0) != a.key("train", 1)


# -- layouts replay cannot rebuild here: exit 2 with what is missing ------------------------------


def _group(**ranks) -> Manifest:
    return Manifest({"schema": 1, "run": {"id": "20261127-000000-000-abcdef", "ranks": ranks}})


def test_nccl_on_more_gpus_than_here_is_not_replayable():
    m = _group(launcher="torchrun", world_size=8, local_world_size=8, backend="nccl")
    with pytest.raises(NotReplayable, match="8 ranks per host on the NCCL backend.*has 0 GPU"):
        group_layout(m, gpus_here=0)


def test_a_job_across_hosts_is_not_replayable_on_one():
    m = _group(launcher="torchrun", world_size=16, local_world_size=8, backend="gloo")
    with pytest.raises(NotReplayable, match="16 ranks on 2 hosts"):
        group_layout(m, gpus_here=0)


def test_a_recorded_slurm_step_without_srun_exits_2(repo):
    code = "import reprokit\n@reprokit.track\ndef train(lr=0.1):\n    return lr\ntrain()\n"
    env = clean_env(
        PYTHONHASHSEED="0", SLURM_PROCID="0", SLURM_NTASKS="2", SLURM_JOB_ID="77", SLURM_STEP_ID="0"
    )
    env["PATH"] = "/usr/bin:/bin"  # no srun here
    proc = run_python(repo, code, env=env)
    assert proc.returncode == 0, proc.stderr
    out = cli(repo, "ls", "--json")
    (row,) = json.loads(out.stdout)["runs"]
    # Rank 1 made no call: no record of it, and no reason to call the run incomplete.
    assert row["ranks"]["absent"] == [1] and row["status"] == "completed"
    rep = cli(repo, "replay", row["id"])
    assert rep.returncode == 2, rep.stdout + rep.stderr
    assert "launched by slurm with 2 ranks; srun is not on PATH" in rep.stderr
    assert "different" not in rep.stdout


# -- torchrun, for real (CPU gloo) ----------------------------------------------------------------

DDP = r"""
import os

import torch
import torch.distributed as dist

import reprokit


@reprokit.track
def train(steps=3, lr=0.1):
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(reprokit.current_run().seed)
    w = torch.zeros(4)
    for step in range(steps):
        g = torch.randn(4) * (rank + 1)
        dist.all_reduce(g)
        w -= lr * g
        if os.environ.get("DIVERGE_RANK") == str(rank) and step == 1:
            w += 1e-3  # this rank alone parts from the record at checkpoint 1
        reprokit.log_metric("loss", float(w.sum()), step=step)
        reprokit.checkpoint("w", w)
        if os.environ.get("KILL_RANK") == str(rank) and step == steps - 1:
            # After the last collective: the other ranks finish in Python and seal (killed
            # earlier, a rank blocked in gloo's wait for it can only die of SIGKILL, unsealed).
            os._exit(9)
    dist.destroy_process_group()
    return float(w.sum())


@reprokit.track
def evaluate():
    return 1.0


if __name__ == "__main__":
    only = os.environ.get("ONLY_RANK")
    if only is None:
        train()
    else:  # the tracked call is made on one rank only; the others join the group untracked
        dist.init_process_group("gloo")
        if str(dist.get_rank()) == only:
            evaluate()
        dist.barrier()
        dist.destroy_process_group()
"""


@pytest.fixture(scope="module")
def torch_repo(tmp_path_factory):
    pytest.importorskip("torch")
    return make_repo(tmp_path_factory.mktemp("ddp") / "repo", {"ddp.py": DDP})


def launch(repo, n, **env):
    import subprocess

    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone",
         f"--nproc-per-node={n}", "ddp.py"],
        cwd=repo, env=clean_env(PYTHONHASHSEED="0", OMP_NUM_THREADS="1", **env),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def newest(repo) -> dict:
    out = cli(repo, "ls", "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["runs"][0]


@pytest.mark.torch
@pytest.mark.parametrize("n", [1, 2, 4])
def test_torchrun_job_is_one_run_with_a_shard_per_rank(torch_repo, n):
    before = len(Store(torch_repo / ".reprokit").run_ids())
    proc = launch(torch_repo, n)
    assert proc.returncode == 0, proc.stderr
    store = Store(torch_repo / ".reprokit")
    assert len(store.run_ids()) == before + 1  # one run for the whole job
    row = newest(torch_repo)
    assert row["status"] == "completed"
    assert row["ranks"]["sealed"] == list(range(n)) and row["ranks"]["world_size"] == n
    m = store.load(row["id"])
    assert m.run["ranks"]["launcher"] == "torchrun" and m.run["ranks"]["backend"] == "gloo"
    shards = store.shards(row["id"])
    assert [s.manifest.run["rank"]["rank"] for s in shards] == list(range(1, n))
    assert {s.manifest.seeds["seed"] for s in shards} <= {m.seeds["seed"]}  # one agreed seed
    assert store.verify(row["id"])["shards"] == n - 1
    whole = cli(torch_repo, "verify", "--all")  # the shards' ledger lines are the runs' ranks
    assert whole.returncode == 0 and whole.stdout.startswith("intact"), whole.stdout + whole.stderr
    ls = cli(torch_repo, "ls")
    assert f"{n}/{n} ranks" in ls.stdout
    show = cli(torch_repo, "show", row["id"])
    assert f"{n} of {n} recorded (torchrun" in show.stdout


@pytest.mark.torch
def test_a_call_made_on_rank_0_only_is_a_complete_run(torch_repo):
    proc = launch(torch_repo, 2, ONLY_RANK="0")
    assert proc.returncode == 0, proc.stderr
    row = newest(torch_repo)
    assert row["status"] == "completed"
    assert row["ranks"]["absent"] == [1] and row["ranks"]["missing"] == []
    assert "no record from rank 1" in cli(torch_repo, "ls").stdout


@pytest.mark.torch
def test_a_killed_rank_leaves_the_run_incomplete_naming_it(torch_repo):
    proc = launch(torch_repo, 2, KILL_RANK="1")
    assert proc.returncode != 0
    row = newest(torch_repo)
    assert row["status"] == "incomplete" and row["ranks"]["missing"] == [1]
    assert "missing rank 1" in cli(torch_repo, "ls").stdout
    rep = cli(torch_repo, "replay", row["id"])
    assert rep.returncode == 2 and "rank 1 left no shard" in rep.stderr


@pytest.mark.torch
@pytest.mark.parametrize("n", [2, 4])
def test_replay_relaunches_the_job_and_compares_every_rank(torch_repo, n):
    proc = launch(torch_repo, n)
    assert proc.returncode == 0, proc.stderr
    rid = newest(torch_repo)["id"]
    out = cli(torch_repo, "replay", rid, "--json", env=clean_env(OMP_NUM_THREADS="1"))
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout)
    assert report["verdict"] == "identical"
    assert [r.get("child") for r in report["runs"]][1:] == [f"rank {r}" for r in range(1, n)]


@pytest.mark.torch
def test_replay_names_the_first_rank_and_checkpoint_that_diverged(torch_repo):
    proc = launch(torch_repo, 2)
    assert proc.returncode == 0, proc.stderr
    rid = newest(torch_repo)["id"]
    out = cli(torch_repo, "replay", rid, env=clean_env(OMP_NUM_THREADS="1", DIVERGE_RANK="1"))
    assert out.returncode == 1, out.stdout + out.stderr
    assert "first divergence: rank 1, checkpoint #1 (w)" in out.stdout


@pytest.mark.torch
def test_a_command_run_of_torchrun_holds_the_job_and_replays_it(torch_repo):
    out = cli(
        torch_repo, "run", "--json", "--", sys.executable, "-m", "torch.distributed.run",
        "--standalone", "--nproc-per-node=2", "ddp.py",
        env=clean_env(OMP_NUM_THREADS="1"),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    command = json.loads(out.stdout)["run"]
    job = Store(torch_repo / ".reprokit")
    children = [e.manifest for e in job.entries() if e.manifest and e.manifest.run.get("parent")]
    (child,) = [c for c in children if c.run["parent"] == command]
    assert child.run["ranks"]["world_size"] == 2
    rep = cli(torch_repo, "replay", command, "--json", env=clean_env(OMP_NUM_THREADS="1"))
    assert rep.returncode == 0, rep.stdout + rep.stderr
    labels = [r.get("child") for r in json.loads(rep.stdout)["runs"]]
    assert labels == [None, "train", "train/rank 1"]


@pytest.mark.torch
def test_verify_all_names_a_deleted_rank_shard(torch_repo, tmp_path):
    import os
    import shutil
    import stat

    proc = launch(torch_repo, 2)
    assert proc.returncode == 0, proc.stderr
    copy = tmp_path / "store"
    shutil.copytree(torch_repo / ".reprokit", copy)
    rid = newest(torch_repo)["id"]
    shard = copy / "shards" / rid / "rank-1"
    for p in [shard, *shard.iterdir()]:
        os.chmod(p, os.stat(p).st_mode | stat.S_IWUSR)
    shutil.rmtree(shard)
    out = cli(torch_repo, "--store", str(copy), "verify", "--all")
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"rank 1 of run {rid}" in out.stderr and "missing" in out.stderr
