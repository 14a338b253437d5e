"""A local stand-in for the AceDataCloud Kling API, faithful to its wire contract.

It serves kling-mcp's end-to-end tests, its demo mode and the `kling-mcp emulator` command:

    emu = Emulator(token="emulator-token", task_seconds=0.3)
    async with serve_emulator(emu) as base_url:
        ...  # point the client at base_url

What it answers (every call is POST + JSON with `authorization: Bearer <token>`):
- A missing header is 401 `no_token`; a wrong token, or a header that is not
  `Bearer <token>`, is 401 `invalid_token`. With `token=None` any token passes.
- `/kling/videos` (actions text2video, image2video, extend; Turbo, storyboards, saved
  voices), `/kling/motion`, `/kling/lip-sync`, `/kling/talking-photo`, `/kling/goods-studio`
  and `/kling/video-commerce` check the contract's required fields and the API's input limits
  (400 `bad_request` naming the field) and start a task that ends `task_seconds` later.
  With `"async": true` or a `callback_url` they answer `{"success", "task_id", "trace_id"}`
  at once (and POST the final result to the callback_url when done, best effort);
  otherwise they hold the call and answer the final result.
- A prompt (or lip-sync text) containing `fail_marker` ends `failed` with code
  `task_failed`; one containing "[moderation]" ends `failed` with `moderation_blocked`;
  one containing "[N s]" (N seconds, at most 999) ends N seconds later instead.
- `/kling/tasks` action `retrieve` answers the task object; while the task runs its
  `response` is missing, then `{}`, then `{"state": "processing"}`. An unknown id is
  HTTP 404 with error code `not_found` (the contract does not say; this is what a REST API
  would do, and a client must treat it as final, not as "still running").
  Action `retrieve_batch` answers `{"items", "count"}` without the unknown ids.
- Every JSON answer carries a fresh `trace_id` (a task's final result keeps the one of
  its submission).
- Without auth: `GET /media/<task_id>.mp4` (a real MP4, once the task succeeded),
  `GET /health`, `POST /_emulator/faults` (plan a fault from outside: `{"path", "kind",
  "times", "status", "error_code", "message", "retry_after", "seconds", "after_bytes"}`)
  and `GET /_emulator/stats`.
- Media is served like a CDN: with `content-length` and `accept-ranges: bytes`, a single
  `Range` answered 206 with `content-range` (416 past the end). The video is the tiny
  sample, or with `video_bytes=N` that sample padded by a `free` box to N bytes (it still
  plays); with `clips=True` each task's own real H.264 clip instead, as long as the task
  reports, at its aspect ratio, made on first request and kept (demo mode serves these).
  With `link_seconds=S` every `video_url` is a signed link,
  `/media/<task_id>.mp4?expires=<unix>&sig=<hmac>`, signed afresh by each answer that
  carries it and valid for S seconds; an expired, altered or unsigned link is 403 with a
  CDN's XML error body saying so.
- `Fault.cut_after(n)` (kind `cut`) lets the API answer but closes the TCP connection
  after n body bytes; `emulator.inject("/media", ...)` plans a fault for every path below.

What it records, for tests to check: `counts` (requests per path, faulted ones included),
`submissions` (generation bodies that reached the API: not answered by a fault, except a
delay, which only holds the answer back), `tasks` (by id), `queried_ids` (the ids each
task query asked for) and `media_ranges` (the `Range` header of each media request that
reached the CDN, None without one); `video` is the bytes every finished video serves
(`video_of(task)` a task's own, with `clips=True`).
"""

from .app import Emulator
from .faults import Fault
from .server import run_emulator, serve_emulator
from .tasks import EmulatedTask

__all__ = ["EmulatedTask", "Emulator", "Fault", "run_emulator", "serve_emulator"]
