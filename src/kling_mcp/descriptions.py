"""The tools' descriptions: what each does to the world, when to pick it, and the rules
between its parameters that a JSON schema cannot show. Model facts come from the
capability table, so the text cannot drift from the validation."""

from __future__ import annotations

from kling_mcp.capabilities import (
    MAX_REFERENCES,
    MAX_REFERENCES_WITH_VIDEO,
    audio_rule,
    duration_rule,
    four_k_rule,
    no_guidance_models,
    omni_rule,
)
from kling_mcp.models import ModelCatalog

WAITING = """Behavior:
- Spends AceDataCloud credits: one paid Kling task per call, never resubmitted automatically.
- Waits for the result up to `timeout` seconds, sending progress (state, elapsed time). Claude
  Desktop cancels calls after about 60 s, so there the wait never exceeds 55 s; Claude Code keeps a
  call alive while progress flows, so 300 or more works there.
- Returns video_url (a signed link that expires: download it), video_id (for kling_extend_video and
  kling_lip_sync), duration, task_id and trace_id, as structured content and as text.
- If the wait ends first it returns state 'running' with the task_id, not an error: resume with
  kling_get_task (free); never call a generation tool again for the same video. A failed task is an
  error carrying the API's reason, task_id and trace_id.
- Invalid arguments are rejected, naming the field, before anything is sent or charged."""

_VIDEO_RULES = f"""Rules between parameters (see kling_list_models for each model):
- duration: {duration_rule()}.
- mode '4k': only {four_k_rule()}, and not with image_list or video_list.
- generate_audio: only {audio_rule()}; not with video_list.
- image_list / video_list (Omni references): only {omni_rule()}; then leave out negative_prompt,
  cfg_scale and camera_control ({no_guidance_models()} never takes them).
- At most one reference video; reference images plus element_list subjects at most {MAX_REFERENCES},
  or {MAX_REFERENCES_WITH_VIDEO} with a reference video."""

GENERATE_VIDEO = f"""Generate a Kling video from a text prompt alone (text-to-video).

Use it when there is no image to start from. To animate a given image or move between two images use
kling_generate_video_from_image; to continue an existing Kling video use kling_extend_video. Defaults:
kling-v2-master, std, 16:9, 5 s (unless the server was configured otherwise).

{WAITING}

{_VIDEO_RULES}"""

GENERATE_VIDEO_FROM_IMAGE = f"""Animate a start image into a video, or make a transition from a start \
image to an end image; the prompt describes the motion (image-to-video).

Use it when you have an image that must appear as the first frame (and optionally one for the last
frame). Without any image use kling_generate_video. start_image_url is required (Kling needs a first
frame; with Omni models an image_list item typed first_frame counts); end_image_url is optional and
needs a start image. Images must be public http(s) URLs; set aspect_ratio to match the image.

{WAITING}

{_VIDEO_RULES}
- A reference video with refer_type 'base' cannot be combined with start or end frames."""

EXTEND_VIDEO = f"""Continue an existing Kling video with more footage that follows a new prompt.

Use it to make a longer video: pass the video_id from a finished generation (not its task_id or URL),
then extend the result again for more. Leave model, mode and duration out to keep the original's.
Which models can be extended is disputed between AceDataCloud's sources, so the API decides and its
message is relayed (AceDataCloud's own server refuses kling-o1 videos).

{WAITING}"""

GENERATE_MOTION = f"""Make the character in an image move like the person in a reference video \
(motion transfer).

Use it to animate a specific character with real choreography, gestures or dance taken from a video;
for motion described in words use kling_generate_video_from_image instead. image_url (a clear, full
body image works best) and video_url must be public http(s) URLs. character_orientation 'image' keeps
the character's facing from the image, 'video' follows the reference video.

{WAITING}"""

LIP_SYNC = f"""Re-voice a video so the face's lips match new speech: either an audio track \
(audio_url) or text spoken by a Kling voice (text + voice_id, voice_language zh/en, voice_speed \
0.8-2.0).

Use it on a Kling result (video_id) or any video with a clearly visible face (video_url): give exactly
one of the two, and exactly one of audio_url or text. To animate a still portrait with audio use
kling_talking_photo instead.

{WAITING}"""

TALKING_PHOTO = f"""Make a portrait photo speak: animates the face in image_url to an audio track \
(audio_url), with lips in sync.

Use it for an avatar or presenter from a single image. For a video that already exists use
kling_lip_sync. Both URLs must be public http(s); duration is 5 or 10 seconds; mode std or pro.

{WAITING}"""

GET_TASK = """Check a Kling task by task_id and, by default, wait for it to finish: answers the moment \
the video is ready, or with state 'running' when `timeout` runs out.

Use it to resume after a generation tool answered 'running', or to fetch the result of a task started
earlier (the video_url, video_id and duration, or the failure reason). Read-only and free: no credits,
nothing submitted. timeout 0 returns the current state at once; otherwise progress notifications
report the state while it waits (default 50 s, right for Claude Desktop; longer in Claude Code). For
several tasks at once use kling_get_tasks_batch. An unknown task_id is an error."""

GET_TASKS_BATCH = """Look up to 100 Kling tasks in one request, without waiting: each task's state, \
video_url, video_id and any error; ids the API does not know are listed as missing.

Use it to check on several videos at once (for example after starting a batch of generations), or
without task_ids to list every task this server started since it launched: the way to recover a
video whose call was cut off before it returned a task_id. Read-only and free. To wait for one
task to finish use kling_get_task."""

LIST_MODELS = """List the Kling models this server accepts and what each supports: durations, modes \
(4k), native audio, Omni references (image_list, video_list), guidance parameters, and the default \
model.

Use it before choosing a model or when a generation was rejected for a model rule. Read-only, free,
answered locally from the same table that validates requests (no API call)."""


def catalog_text(catalog: ModelCatalog) -> str:
    lines = [f"Default model: {catalog.default_model}"]
    for model in catalog.models:
        extras = [f"modes {'/'.join(model.modes)}"]
        if model.native_audio_modes:
            extras.append(f"audio in {'/'.join(model.native_audio_modes)}")
        if model.omni_references:
            extras.append("Omni references")
        if not model.guidance:
            extras.append("no negative_prompt/cfg_scale/camera_control")
        lines.append(f"- {model.name}: {model.duration_text}; {', '.join(extras)}. {model.notes}")
    lines.append(catalog.extend_note)
    return "\n".join(lines)
