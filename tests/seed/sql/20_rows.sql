-- Sample rows: what a running seed database holds. Not from a migration. Timestamps are
-- relative to now() so the rows look the same age whenever the fixture loads.
-- The ids are spelled out in tests/seed/fixture.py.

-- task_types: names, run types and categories as the seed's migrations insert them
-- (20250203200000_create_task_types_with_run_type.sql for the travel and image types,
-- 20251021000002_add_image_upscale_task_type.sql for image_upscale, an API task).
INSERT INTO task_types (name, run_type, category, display_name, base_cost_per_second, billing_type, unit_cost) VALUES
    ('travel_orchestrator', 'gpu', 'orchestration', 'Travel Orchestrator', 0.0, 'per_second', NULL),
    ('travel_segment', 'gpu', 'generation', 'Travel Segment', 0.0278, 'per_second', NULL),
    ('travel_stitch', 'gpu', 'processing', 'Travel Stitch', 0.0056, 'per_second', NULL),
    ('single_image', 'gpu', 'generation', 'Single Image', 0.0111, 'per_second', NULL),
    ('image_upscale', 'api', 'processing', 'Image Upscale', 0.0, 'per_unit', 0.0015);

-- alice has credits; bob has none, so nothing of his may be claimed.
INSERT INTO users (id, name, email, credits, settings) VALUES
    ('00000000-0000-4000-a000-000000000001', 'alice', 'alice@example.com', 50, NULL),
    ('00000000-0000-4000-a000-000000000002', 'bob', 'bob@example.com', 0, NULL);

INSERT INTO projects (id, name, user_id, created_at) VALUES
    ('00000000-0000-4000-b000-000000000001', 'alice''s travel', '00000000-0000-4000-a000-000000000001',
     now() - interval '30 days'),
    ('00000000-0000-4000-b000-000000000002', 'bob''s stills', '00000000-0000-4000-a000-000000000002',
     now() - interval '30 days');

-- Workers as the seed orchestrator leaves them (gpu_orchestrator/database.py,
-- create_worker_record / update_worker_status): ids gpu-<timestamp>-<8 hex>, the GPU
-- type as instance_type, the Runpod pod id only in metadata.runpod_id. One ended long
-- ago; one is alive, heartbeating and holding the travel orchestrator.
INSERT INTO workers (id, instance_type, created_at, last_heartbeat, status, metadata) VALUES
    ('gpu-20260101_080000-0ld00001', 'NVIDIA GeForce RTX 4090', now() - interval '3 days',
     now() - interval '2 days', 'terminated',
     '{"runpod_id": "oldpod0001", "orchestrator_status": "terminated"}'),
    ('gpu-20260102_120000-5eed0001', 'NVIDIA GeForce RTX 4090', now() - interval '1 day',
     now(), 'active',
     '{"runpod_id": "seedpod0001", "orchestrator_status": "active", "vram_total_mb": 24564, "vram_used_mb": 1200}');

-- Finished work: a Complete image and a Failed one (update-task-status writes a failed
-- worker's error into output_location).
INSERT INTO tasks (id, task_type, params, status, project_id, worker_id, attempts, created_at,
                   updated_at, generation_started_at, generation_processed_at, output_location) VALUES
    ('00000000-0000-4000-c000-000000000001', 'single_image', '{"prompt": "a lighthouse"}',
     'Complete', '00000000-0000-4000-b000-000000000001', 'gpu-20260101_080000-0ld00001', 0,
     now() - interval '2 days 3 hours', now() - interval '2 days 2 hours',
     now() - interval '2 days 2 hours 5 minutes', now() - interval '2 days 2 hours',
     'https://example.supabase.co/storage/v1/object/public/image_uploads/lighthouse.png'),
    ('00000000-0000-4000-c000-000000000002', 'single_image', '{"prompt": "a storm"}',
     'Failed', '00000000-0000-4000-b000-000000000001', 'gpu-20260101_080000-0ld00001', 0,
     now() - interval '2 days 3 hours', now() - interval '2 days 2 hours',
     now() - interval '2 days 2 hours 10 minutes', NULL, 'CUDA out of memory');

-- A travel run (Headless-Wan2GP source/sm_functions/travel_between_images.py): the
-- orchestrator, claimed hours ago, stays In Progress until its last child completes; it
-- queued two segments, the second dependant_on the first, and a stitch dependant_on the
-- last segment. Children name their parent in params.orchestrator_task_id_ref.
INSERT INTO tasks (id, task_type, params, status, project_id, worker_id, created_at,
                   updated_at, generation_started_at, dependant_on) VALUES
    ('00000000-0000-4000-c000-000000000010', 'travel_orchestrator',
     '{"orchestrator_details": {"orchestrator_task_id": "00000000-0000-4000-c000-000000000010", "run_id": "run-1", "num_new_segments_to_generate": 2}}',
     'In Progress', '00000000-0000-4000-b000-000000000001', 'gpu-20260102_120000-5eed0001',
     now() - interval '3 hours', now() - interval '3 hours', now() - interval '3 hours', NULL),
    ('00000000-0000-4000-c000-000000000011', 'travel_segment',
     '{"orchestrator_task_id_ref": "00000000-0000-4000-c000-000000000010", "orchestrator_run_id": "run-1", "segment_index": 0}',
     'Queued', '00000000-0000-4000-b000-000000000001', NULL,
     now() - interval '2 hours 59 minutes', NULL, NULL, NULL),
    ('00000000-0000-4000-c000-000000000012', 'travel_segment',
     '{"orchestrator_task_id_ref": "00000000-0000-4000-c000-000000000010", "orchestrator_run_id": "run-1", "segment_index": 1}',
     'Queued', '00000000-0000-4000-b000-000000000001', NULL,
     now() - interval '2 hours 58 minutes', NULL, NULL, '00000000-0000-4000-c000-000000000011'),
    ('00000000-0000-4000-c000-000000000013', 'travel_stitch',
     '{"orchestrator_task_id_ref": "00000000-0000-4000-c000-000000000010", "orchestrator_run_id": "run-1"}',
     'Queued', '00000000-0000-4000-b000-000000000001', NULL,
     now() - interval '2 hours 57 minutes', NULL, NULL, '00000000-0000-4000-c000-000000000012');

-- Queued work no GPU worker may take: an API task of alice's (the seed's API
-- orchestrator runs those) and bob's image, older than everything else, but bob has no
-- credits.
INSERT INTO tasks (id, task_type, params, status, project_id, created_at) VALUES
    ('00000000-0000-4000-c000-000000000020', 'image_upscale', '{"image": "lighthouse.png"}',
     'Queued', '00000000-0000-4000-b000-000000000001', now() - interval '2 hours 30 minutes'),
    ('00000000-0000-4000-c000-000000000030', 'single_image', '{"prompt": "a quiet harbour"}',
     'Queued', '00000000-0000-4000-b000-000000000002', now() - interval '5 hours');
