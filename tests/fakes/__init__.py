"""Fakes that speak real protocols over loopback (nothing is mocked below HTTP)."""

from tests.fakes.runpod_v2 import FakeRunpod, RecordedRequest, run_fake_runpod
from tests.fakes.runpod_v2_local import LocalWorkersBehindPods
from tests.fakes.runpod_v2_pods import FakePod

__all__ = ["FakePod", "FakeRunpod", "LocalWorkersBehindPods", "RecordedRequest", "run_fake_runpod"]
