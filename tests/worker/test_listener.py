"""Which notifications wake the claim loop and which poke the heartbeat."""

from __future__ import annotations

import pytest

from worker.listener import classify


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        ('{"event": "task_queued"}', "work"),
        ('{"event": "task_finished", "status": "Complete", "worker_id": "me"}', "ignore"),
        ('{"event": "worker_status", "worker_id": "me", "status": "terminating"}', "status"),
        ('{"event": "worker_status", "worker_id": "other", "status": "terminating"}', "ignore"),
        ('{"event": "drain", "worker_id": "me"}', "status"),
        ('{"event": "worker_drained", "worker_id": "other"}', "ignore"),
        ('{"event": "sweep"}', "ignore"),
        ('{"event": "something_new"}', "work"),
        ("not json at all", "work"),
        ("[1, 2]", "work"),
        ("", "work"),
    ],
)
def test_classify(payload: str, kind: str) -> None:
    assert classify(payload, "me") == kind
