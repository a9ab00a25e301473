"""What the id-map round trip costs a sandboxed run (``python benchmarks/bench_sandbox_idmap.py``).

bubblewrap started by root waits on ``--userns-block-fd`` until the parent has written its
child's uid/gid maps (``repro.sandbox.kernel._IdMap``). This times, interleaved, ``python -S -c``
under (a) that path, (b) bubblewrap mapping the ids itself (``--uid 65534``: the program is then
host root seen from outside, which is why the sandbox does not do it; timing only) and (c) the
bare interpreter. Root and bubblewrap are required.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

from repro.sandbox import kernel

ROUNDS = 150
FLAGS = ["-S", "-s", "-B", "-P"]
ENV = {"PATH": "/usr/bin:/bin"}


def main() -> int:
    if os.geteuid() != 0 or not kernel._maps_ids(kernel._namespace_prefix()):
        sys.exit("error: needs root and bubblewrap (the sandbox's id-map path)")
    prefix = kernel._namespace_prefix()
    own_ids = (prefix[0], *kernel._BWRAP_NAMESPACES, "--uid", "65534", "--gid", "65534",
               "--cap-drop", "ALL")  # fmt: skip
    py = kernel._interpreter(prefix)
    drop = "import os; os.setresgid(65534, 65534, 65534); os.setresuid(65534, 65534, 65534)"

    def id_map() -> None:
        ids = kernel._IdMap()
        cmd = kernel._bwrap_command(prefix, 1 << 20, (), ids) + [py, *FLAGS, "-c", drop]
        proc = kernel._spawn(cmd, ids, 20, stdin=subprocess.DEVNULL, env=ENV, cwd="/",
                             start_new_session=True)  # fmt: skip
        assert proc.wait() == 0
        ids.close()

    def bwrap_maps() -> None:
        cmd = kernel._bwrap_command(own_ids, 1 << 20, (), None) + [py, *FLAGS, "-c", "pass"]
        assert subprocess.run(cmd, stdin=subprocess.DEVNULL, env=ENV, cwd="/").returncode == 0

    def bare() -> None:
        assert subprocess.run([py, *FLAGS, "-c", "pass"], env=ENV, cwd="/").returncode == 0

    runs = {"id maps written by the parent": id_map, "bwrap maps the ids itself": bwrap_maps,
            "bare interpreter": bare}  # fmt: skip
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(ROUNDS):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    for name, t in times.items():
        print(f"{name:32s} median {1e3 * statistics.median(t):6.2f} ms   min {1e3 * min(t):6.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
