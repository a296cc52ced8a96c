"""A stand-in GPU program for the ``command`` processor tests.

Reads the task's params as JSON on stdin and behaves as ``params["mode"]`` says:
ok (progress line, then the JSON result), garbage, fail (stderr + exit 3), hang (writes
its pid to ``params["pidfile"]`` and sleeps), env (reports its environment).
"""

import json
import os
import sys
import time

params = json.load(sys.stdin)
mode = params.get("mode", "ok")
if mode == "ok":
    print("loading model... 100%", flush=True)
    print(json.dumps({"ok": True, "frames": params.get("frames", 0)}))
elif mode == "garbage":
    print("this is not json {{{")
elif mode == "fail":
    print("CUDA error: out of memory", file=sys.stderr)
    sys.exit(3)
elif mode == "hang":
    with open(params["pidfile"], "w") as f:
        f.write(str(os.getpid()))
    print("started, waiting forever", file=sys.stderr, flush=True)
    time.sleep(3600)
elif mode == "env":
    print(
        json.dumps(
            {
                k: os.environ.get(k)
                for k in (
                    "GPU_REACTOR_TASK_ID",
                    "GPU_REACTOR_TASK_TYPE",
                    "GPU_REACTOR_TASK_ATTEMPT",
                    "DATABASE_URL",
                )
            }
        )
    )
