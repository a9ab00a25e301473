"""A one-node SLURM cluster on localhost for the live-cluster tests (and for trying the profile).

    python tests/workflow/slurm_cluster.py start     # install if missing, configure, start
    python tests/workflow/slurm_cluster.py status    # sinfo + the daemons' pids
    python tests/workflow/slurm_cluster.py stop      # stop the daemons this module started

What it does (root only, Debian/Ubuntu):

* installs Debian's ``slurm-wlm`` and ``munge`` with apt-get when ``sbatch``/``slurmctld`` are
  missing (``apt-get update`` first when the package is unknown);
* writes ``/etc/slurm/slurm.conf`` — the fixed path matters: the Snakemake jobstep strips every
  ``SLURM_*`` variable (``SLURM_CONF`` included) before its inner ``srun``. A ``slurm.conf`` that
  this module did not write (no marker line) is never overwritten: :class:`ClusterUnavailable`;
* the node is this machine as ``slurmd -C`` reports it (CPUs, RealMemory), named ``localhost``, in
  one partition ``debug``; no GPUs, no cgroups (``proctrack/linuxproc``, ``task/none``, which work
  in containers); no accounting database (``accounting_storage/none``) — so job status comes from
  ``squeue`` (``MinJobAge=600`` keeps finished jobs visible long enough, docs/pipeline.md §2.2);
* memory limits are enforced without cgroups by ``jobacct_gather/linux`` polling every second
  with ``OverMemoryKill`` (a step above its ``--mem`` is killed: the job ends OUT_OF_MEMORY);
* starts ``munged`` (as user munge), ``slurmctld`` and ``slurmd -N localhost``; waits until the
  node is idle; :func:`stop` ends exactly the daemons it started (their pid files).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

MARKER = "# written by repro tests/workflow/slurm_cluster.py"
CONF = Path("/etc/slurm/slurm.conf")
STATE = Path("/var/lib/repro-slurm")
RUN = Path("/run/repro-slurm")
LOGS = Path("/var/log/repro-slurm")
PARTITION = "debug"
PACKAGES = ("slurm-wlm", "munge")
#: finished jobs stay in squeue this long; the plugin needs >= 3 x its first status delay
MIN_JOB_AGE = 600


class ClusterUnavailable(RuntimeError):
    """This machine cannot host the test cluster (the message says why)."""


@dataclass
class Cluster:
    partition: str
    cpus: int
    real_memory_mb: int
    conf: Path = CONF

    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}


def _run(cmd: list[str], check: bool = True, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=timeout, **kw)


def installed() -> bool:
    return all(shutil.which(b) for b in ("sbatch", "squeue", "scancel", "slurmctld", "slurmd",
                                         "munged"))


def install() -> None:
    """apt-get install slurm-wlm munge (root, Debian-like); ClusterUnavailable when impossible."""
    if installed():
        return
    if os.geteuid() != 0:
        raise ClusterUnavailable("slurm-wlm/munge are not installed and we are not root")
    if not shutil.which("apt-get"):
        raise ClusterUnavailable("slurm-wlm/munge are not installed and there is no apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    if proc.returncode != 0:  # an empty or stale package index: update once and retry
        subprocess.run(["apt-get", "update"], capture_output=True, text=True, env=env, timeout=600)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    if proc.returncode != 0 or not installed():
        raise ClusterUnavailable(
            f"apt-get install {' '.join(PACKAGES)} failed ({proc.returncode}): "
            f"{(proc.stdout + proc.stderr)[-2000:]}"
        )


def node_hardware() -> tuple[int, int]:
    """(CPUs, RealMemory MB) of this machine as slurmd sees it (``slurmd -C``)."""
    out = _run(["slurmd", "-C"]).stdout
    fields = dict(tok.split("=", 1) for tok in out.split() if "=" in tok)
    return int(fields["CPUs"]), int(fields["RealMemory"])


def slurm_conf(cpus: int, real_memory_mb: int) -> str:
    return f"""{MARKER}
# A one-node test cluster: no cgroups, no GPUs, no accounting database. Do not edit: rewritten on start.
ClusterName=repro-test
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation={STATE}/ctld
SlurmdSpoolDir={STATE}/d
SlurmctldPidFile={RUN}/slurmctld.pid
SlurmdPidFile={RUN}/slurmd.pid
SlurmctldLogFile={LOGS}/slurmctld.log
SlurmdLogFile={LOGS}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=1
JobAcctGatherParams=OverMemoryKill
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
MinJobAge={MIN_JOB_AGE}
KillWait=5
InactiveLimit=0
NodeName=localhost CPUs={cpus} RealMemory={real_memory_mb} State=UNKNOWN
PartitionName={PARTITION} Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


def _pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except OSError:
        return None
    return pid


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise ClusterUnavailable(f"timed out after {timeout:.0f} s waiting for {what}; logs in {LOGS}")


def node_state() -> str:
    proc = _run(["sinfo", "-h", "-N", "-o", "%T"], check=False, timeout=20)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def start() -> Cluster:
    """Install when missing, write slurm.conf, start munged/slurmctld/slurmd; wait for idle."""
    if sys.platform != "linux":
        raise ClusterUnavailable("the test cluster needs Linux")
    install()
    if os.geteuid() != 0:
        raise ClusterUnavailable("starting slurmctld/slurmd needs root")
    if CONF.exists() and MARKER not in CONF.read_text():
        raise ClusterUnavailable(f"{CONF} exists and was not written by this module: not touching it")
    cpus, mem = node_hardware()
    mem = max(int(mem * 0.9), 1000)  # a little below the reported memory: never "Low RealMemory"
    stop(munge=False)  # leftovers of an earlier run (a running munged is reused)
    for d in (STATE / "ctld", STATE / "d", RUN, LOGS):
        d.mkdir(parents=True, exist_ok=True)
    CONF.parent.mkdir(parents=True, exist_ok=True)
    CONF.write_text(slurm_conf(cpus, mem))
    _start_munge()
    _run(["slurmctld", "-c"])  # -c: clear saved state (jobs of an earlier run)
    _wait(lambda: _pid(RUN / "slurmctld.pid") is not None, 30, "slurmctld")
    _run(["slurmd", "-N", "localhost"])
    _wait(lambda: _pid(RUN / "slurmd.pid") is not None, 30, "slurmd")

    def idle() -> bool:
        state = node_state()
        if state.startswith(("down", "drain")):
            _run(["scontrol", "update", "NodeName=localhost", "State=RESUME"], check=False)
        return state.startswith(("idle", "mixed", "allocated"))

    _wait(idle, 60, "node localhost to become idle")
    return Cluster(PARTITION, cpus, mem)


def _munge_works() -> bool:
    return _run(["munge", "-n"], check=False, timeout=10).returncode == 0


def _start_munge() -> None:
    sock_dir = Path("/run/munge")
    if _munge_works():  # a running munged (ours from before, or the system's): use it
        return
    sock_dir.mkdir(parents=True, exist_ok=True)
    shutil.chown(sock_dir, "munge", "munge")
    key = Path("/etc/munge/munge.key")
    if not key.exists():
        _run(["mungekey", "--create"], check=False)
        if key.exists():
            shutil.chown(key, "munge", "munge")
            key.chmod(0o600)
    for d in (Path("/var/log/munge"), Path("/var/lib/munge")):
        d.mkdir(parents=True, exist_ok=True)
        shutil.chown(d, "munge", "munge")
    proc = _run(["runuser", "-u", "munge", "--", "munged"], check=False)
    if proc.returncode != 0:
        raise ClusterUnavailable(f"munged did not start: {proc.stderr.strip()}")
    (RUN / "munged.started").write_text("1")  # ours: stop() ends it
    _wait(_munge_works, 20, "munged")


def stop(munge: bool = True) -> None:
    """Cancel remaining jobs, then end slurmd, slurmctld and (when we started it) munged."""
    if _pid(RUN / "slurmctld.pid"):
        _run(["scancel", "--full", "--user", "root"], check=False, timeout=20)
    pids = [("slurmd", _pid(RUN / "slurmd.pid")), ("slurmctld", _pid(RUN / "slurmctld.pid"))]
    if munge and (RUN / "munged.started").exists():
        pids.append(("munged", _pid(Path("/run/munge/munged.pid"))))
        (RUN / "munged.started").unlink()
    for name, pid in pids:
        if pid is None:
            continue
        os.kill(pid, signal.SIGTERM)
        try:
            _wait(lambda p=pid: not _alive(p), 20, f"{name} to stop")
        except ClusterUnavailable:
            os.kill(pid, signal.SIGKILL)
    # The configuration goes too: with a slurm.conf naming a controller that is down,
    # `scontrol show config` waits ~9 s before failing, and the SLURM executor plugin runs it when
    # Snakemake imports its plugins, so every later `snakemake` call here (a dry run included:
    # the tests after these, `make demo`) took 9 s longer. Without a slurm.conf it fails at once.
    if CONF.exists() and MARKER in CONF.read_text():
        CONF.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    # a zombie child counts as gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def main(argv: list[str]) -> int:
    cmd = argv[0] if argv else "status"
    if cmd == "start":
        c = start()
        print(f"cluster up: partition {c.partition}, {c.cpus} CPUs, {c.real_memory_mb} MB")
    elif cmd == "stop":
        stop()
        print("stopped")
    else:
        print(_run(["sinfo"], check=False).stdout)
        for name in ("slurmctld", "slurmd"):
            print(name, _pid(RUN / f"{name}.pid"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
