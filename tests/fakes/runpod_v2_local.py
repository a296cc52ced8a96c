"""Real local processes behind fake Runpod pods (for end-to-end tests and benchmarks).

local = LocalProvider(settings=settings, workdir=tmp_path)
behind = LocalWorkersBehindPods(local)
async with run_fake_runpod(on_create=behind.on_create,
                           on_terminate=behind.on_terminate) as runpod:
    ...
await local.close()
"""

from __future__ import annotations

from reactor.providers.base import PodSpec
from reactor.providers.local import LocalProvider
from tests.fakes.runpod_v2_pods import FakePod


class LocalWorkersBehindPods:
    """FakeRunpod hooks: each created pod starts a LocalProvider process with the pod's
    name and env; terminating the pod terminates that process."""

    def __init__(self, local: LocalProvider) -> None:
        self.local = local
        self.by_pod: dict[str, str] = {}  # fake pod id -> local pod id

    async def on_create(self, pod: FakePod) -> None:
        started = await self.local.create(PodSpec(name=pod.name, env=dict(pod.env)))
        self.by_pod[pod.id] = started.id

    async def on_terminate(self, pod: FakePod) -> None:
        local_id = self.by_pod.pop(pod.id, None)
        if local_id is not None:
            await self.local.terminate(local_id)

    def pid(self, pod_id: str) -> int | None:
        """The process id behind a fake pod, while it runs."""
        local_id = self.by_pod.get(pod_id)
        return int(local_id.removeprefix("local-")) if local_id else None
