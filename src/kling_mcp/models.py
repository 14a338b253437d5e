"""The tools' inputs and outputs, as pydantic models.

Each input model is a tool's published JSON schema (types, enums, ranges, descriptions),
checks every rule of the wire contract before anything is sent (the cross-parameter ones
through `capabilities.plan_problems`), and knows its own request body: `endpoint` and
`to_wire()` are where a parameter goes on the wire.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from kling_mcp.capabilities import (
    MODEL_NAMES,
    AspectRatio,
    FrameType,
    GenerationPlan,
    Mode,
    ModelSpec,
    audio_rule,
    describe_durations,
    duration_rule,
    four_k_rule,
    omni_rule,
    plan_problems,
)

MAX_WAIT_SECONDS = 3600
T = TypeVar("T")


def _require_http_url(value: str) -> str:
    if not value.lower().startswith(("http://", "https://")):
        raise ValueError(
            "must be an http(s) URL that Kling's servers can download; "
            "local paths and data: URIs are not accepted (host the file publicly first)"
        )
    return value


HttpUrl = Annotated[str, AfterValidator(_require_http_url), Field(json_schema_extra={"format": "uri"})]
ModelName = Literal[MODEL_NAMES]  # type: ignore[valid-type]
Seconds = Annotated[float, Field(ge=0, le=MAX_WAIT_SECONDS)]


class _Model(BaseModel):
    # Validators and schemas are built on first use, not at import: that keeps them off the
    # server's start-up path (tools are built when a client first lists or calls them).
    model_config = ConfigDict(defer_build=True)


class _Strict(_Model):
    model_config = ConfigDict(extra="forbid")


# --- Parts of requests ----------------------------------------------------------------------


class CameraConfig(_Strict):
    """Movement strengths for camera_control type 'simple'; each from -1 to 1, use one at a time."""

    horizontal: float | None = Field(None, ge=-1, le=1, description="Truck left (<0) or right (>0).")
    vertical: float | None = Field(None, ge=-1, le=1, description="Pedestal down (<0) or up (>0).")
    pan: float | None = Field(None, ge=-1, le=1, description="Rotate around the vertical axis.")
    tilt: float | None = Field(None, ge=-1, le=1, description="Rotate around the horizontal axis.")
    roll: float | None = Field(None, ge=-1, le=1, description="Rotate around the lens axis.")
    zoom: float | None = Field(None, ge=-1, le=1, description="Zoom out (<0) or in (>0).")


def _parse_json_text(value: Any) -> Any:
    """Objects and lists may come as JSON text: the seed passes camera_control that way, and
    some hosts send every structured argument so."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise ValueError("is text but not JSON: pass an object or a list, or its JSON text") from None
    return value


JsonText = Annotated[T, BeforeValidator(_parse_json_text)]
"""A structured argument, also accepted as JSON text."""


class CameraControl(_Strict):
    type: Literal["simple", "down_back", "forward_up", "left_turn_forward", "right_turn_forward"] = Field(
        description="A preset move, or 'simple' to set one movement in config."
    )
    config: CameraConfig | None = Field(None, description="Only for type 'simple'.")


class Element(_Strict):
    element_id: str = Field(min_length=1, description="A subject id from your Kling subject library.")


class ImageReference(_Strict):
    image_url: HttpUrl
    type: FrameType | None = Field(
        None, description="Use this image as the first or end frame; leave out for a plain reference."
    )


class VideoReference(_Strict):
    video_url: HttpUrl = Field(description="MP4/MOV, 3-10 s, 720-2160 px, 24-60 fps, at most 200 MB.")
    refer_type: Literal["feature", "base"] = Field(
        "base", description="'base': edit this video; 'feature': borrow its style and motion."
    )
    keep_original_sound: Literal["yes", "no"] | None = None


# --- Shared fields --------------------------------------------------------------------------


class GenerationRequest(_Strict):
    """What every generation tool takes besides its content: how long to wait, and a webhook."""

    endpoint: ClassVar[str]

    timeout: Seconds | None = Field(
        None,
        description=(
            "Seconds this call waits for the video before answering with the task id (the task keeps "
            "running). Claude Desktop cancels tool calls after about 60 s, so there the wait stops at "
            "55 s whatever this says; hosts that keep calls alive on progress (Claude Code) can wait "
            "minutes. 0: return right after submitting."
        ),
    )
    callback_url: HttpUrl | None = Field(
        None, description="Optional webhook: AceDataCloud POSTs the final result there too."
    )

    def payload(self) -> dict[str, Any]:
        """The tool-specific part of the request body."""
        return self.model_dump(mode="json", exclude_none=True, exclude={"timeout", "callback_url"})

    def to_wire(self) -> dict[str, Any]:
        """The request body: always asynchronous, so a dropped connection never loses a task id."""
        body = self.payload()
        if self.callback_url:
            body["callback_url"] = self.callback_url
        body["async"] = True
        return body


class _Prompted(_Strict):
    prompt: str = Field(
        min_length=1,
        max_length=2500,
        description=(
            "What should happen in the video: subject, motion, camera, mood. "
            "Describe movement, not just a scene."
        ),
    )


class _Frames(_Strict):
    start_image_url: HttpUrl | None = Field(
        None, description="URL of the image to use as the first frame; the video animates from it."
    )
    end_image_url: HttpUrl | None = Field(
        None, description="URL of the image to use as the last frame; needs start_image_url too."
    )


NegativePrompt = Annotated[
    str | None, Field(None, max_length=2500, description="Things to avoid in the video.")
]
CfgScale = Annotated[
    float | None, Field(None, ge=0, le=1, description="0 to 1: higher follows the prompt more strictly.")
]
GUIDANCE_FIELDS = ("negative_prompt", "cfg_scale", "camera_control")


def _given(request: BaseModel, names: tuple[str, ...]) -> list[str]:
    return [name for name in names if getattr(request, name, None) is not None]


class VideoOptions(_Strict):
    model: ModelName = Field("kling-v2-master", description="Kling model; see kling_list_models.")
    mode: Mode = Field(
        "std", description=f"'std' (standard), 'pro' (higher quality) or '4k' ({four_k_rule()})."
    )
    aspect_ratio: AspectRatio = Field("16:9", description="Frame shape; match your input image's shape.")
    duration: int = Field(5, ge=3, le=15, description=f"Seconds: {duration_rule()}.")
    generate_audio: bool | None = Field(None, description=f"Generate sound with the video: {audio_rule()}.")
    negative_prompt: NegativePrompt = None
    cfg_scale: CfgScale = None
    camera_control: JsonText[CameraControl] | None = Field(
        None,
        description='Camera move as JSON, e.g. {"type": "forward_up"} or '
        '{"type": "simple", "config": {"zoom": 0.5}}.',
    )
    element_list: JsonText[list[Element]] | None = Field(
        None, description="Subjects from your subject library: [{'element_id': '...'}]."
    )
    image_list: JsonText[list[ImageReference]] | None = Field(
        None, description=f"Omni reference images ({omni_rule()}), optionally typed as frames."
    )
    video_list: JsonText[list[VideoReference]] | None = Field(
        None, description=f"One Omni reference video ({omni_rule()})."
    )

    def plan(self, frames: tuple[str | None, str | None] | None = None) -> GenerationPlan:
        """The rules' view of this request; `frames` are the image tool's start and end image URLs."""
        images = self.image_list or []
        videos = self.video_list or []
        start_image_url, end_image_url = frames or (None, None)
        first_frames = bool(start_image_url) + sum(image.type == "first_frame" for image in images)
        end_frames = bool(end_image_url) + sum(image.type == "end_frame" for image in images)
        return GenerationPlan(
            model=self.model,
            mode=self.mode,
            duration=self.duration,
            generate_audio=bool(self.generate_audio),
            guidance_fields=_given(self, GUIDANCE_FIELDS),
            first_frames=first_frames,
            end_frames=end_frames,
            reference_images=len(images),
            subjects=len(self.element_list or []),
            reference_videos=len(videos),
            base_video=any(video.refer_type == "base" for video in videos),
            first_frame_field="start_image_url" if frames else "image_list",
            end_frame_field="end_image_url" if frames else "image_list",
        )


def _check(problems: list[str]) -> None:
    if problems:
        raise ValueError("\n".join(problems))


# --- Tool inputs ----------------------------------------------------------------------------


class TextToVideoInput(GenerationRequest, VideoOptions, _Prompted):
    endpoint = "/kling/videos"

    @model_validator(mode="after")
    def _rules(self) -> TextToVideoInput:
        _check(plan_problems(self.plan()))
        return self

    def payload(self) -> dict[str, Any]:
        return {"action": "text2video", **super().payload()}


class ImageToVideoInput(GenerationRequest, VideoOptions, _Frames, _Prompted):
    endpoint = "/kling/videos"

    @model_validator(mode="after")
    def _rules(self) -> ImageToVideoInput:
        plan = self.plan(frames=(self.start_image_url, self.end_image_url))
        problems = plan_problems(plan)
        if not (plan.first_frames or plan.end_frames):
            problems.insert(0, "start_image_url: required; give the URL of the image to animate.")
        _check(problems)
        return self

    def payload(self) -> dict[str, Any]:
        return {"action": "image2video", **super().payload()}


class _VideoId(_Strict):
    video_id: str = Field(
        min_length=1, description="video_id of an earlier Kling result (not its task_id or URL)."
    )


class ExtendVideoInput(GenerationRequest, _Prompted, _VideoId):
    endpoint = "/kling/videos"

    model: ModelName | None = Field(None, description="Leave out to use the model of the original video.")
    mode: Mode | None = Field(None, description="'std' or 'pro'; leave out to keep the original's.")
    duration: int | None = Field(None, ge=3, le=15, description="Seconds to add; leave out for the default.")
    negative_prompt: NegativePrompt = None
    cfg_scale: CfgScale = None

    @model_validator(mode="after")
    def _rules(self) -> ExtendVideoInput:
        if self.model is not None:
            plan = GenerationPlan(
                model=self.model,
                mode=self.mode,
                duration=self.duration,
                guidance_fields=_given(self, GUIDANCE_FIELDS),
            )
            _check(plan_problems(plan))
        return self

    def payload(self) -> dict[str, Any]:
        return {"action": "extend", **super().payload()}


class MotionInput(GenerationRequest):
    endpoint = "/kling/motion"

    image_url: HttpUrl = Field(description="The character to animate (a clear, full-body image works best).")
    video_url: HttpUrl = Field(description="The reference video whose movement the character copies.")
    character_orientation: Literal["image", "video"] = Field(
        "image", description="Face the way the character faces in the 'image', or follow the 'video'."
    )
    mode: Literal["std", "pro"] = Field("std", description="'std' or 'pro' (higher quality).")
    prompt: str | None = Field(None, max_length=2500, description="Optional details about the scene.")
    keep_original_sound: Literal["yes", "no"] | None = Field(
        None, description="'yes' keeps the reference video's sound."
    )
    model_name: str | None = Field(
        None, description="Optional motion model name; the API's default if left out."
    )


class LipSyncInput(GenerationRequest):
    endpoint = "/kling/lip-sync"

    video_id: str | None = Field(None, min_length=1, description="video_id of a Kling result to re-voice.")
    video_url: HttpUrl | None = Field(None, description="Or the URL of any video with a visible face.")
    audio_url: HttpUrl | None = Field(None, description="Speech to lip-sync to (audio mode).")
    text: str | None = Field(
        None, max_length=1000, description="Or text to speak with voice_id (speech mode)."
    )
    voice_id: str | None = Field(None, description="The voice for text, from Kling's voice list.")
    voice_language: Literal["zh", "en"] = Field("en", description="Language of text.")
    voice_speed: float = Field(1.0, ge=0.8, le=2.0, description="Speaking rate for text, 0.8 to 2.0.")

    @model_validator(mode="after")
    def _rules(self) -> LipSyncInput:
        problems = []
        if (self.video_id is None) == (self.video_url is None):
            problems.append("video_id / video_url: give exactly one of them.")
        if (self.audio_url is None) == (self.text is None):
            problems.append("audio_url / text: give exactly one: audio to sync to, or text to speak.")
        if self.text is not None and not self.voice_id:
            problems.append("voice_id: required with text; pick a voice for the speech.")
        _check(problems)
        return self

    def payload(self) -> dict[str, Any]:
        body = super().payload()
        if self.audio_url is not None:
            for name in ("text", "voice_id", "voice_language", "voice_speed"):
                body.pop(name, None)
            return {"mode": "audio2video", **body}
        return {"mode": "text2video", **body}


class TalkingPhotoInput(GenerationRequest):
    endpoint = "/kling/talking-photo"

    image_url: HttpUrl = Field(description="A portrait with a clearly visible face.")
    audio_url: HttpUrl = Field(description="The speech the portrait says.")
    prompt: str | None = Field(None, max_length=2500, description="Optional: expression, gestures, mood.")
    model: str | None = Field(None, description="Optional model; the API's default if left out.")
    duration: Literal[5, 10] = Field(5, description="Seconds: 5 or 10.")
    mode: Literal["std", "pro"] = Field("std", description="'std' or 'pro' (higher quality).")


class GetTaskInput(_Strict):
    task_id: str = Field(min_length=1, description="The task_id a generation tool answered with.")
    timeout: Seconds | None = Field(
        None,
        description=(
            "Seconds to wait for the task to finish (answers as soon as it does); 0 returns the "
            "current state at once. Capped at 55 s in Claude Desktop, which cancels longer calls."
        ),
    )


class GetTasksBatchInput(_Strict):
    task_ids: JsonText[list[Annotated[str, Field(min_length=1)]]] | None = Field(
        None,
        min_length=1,
        max_length=100,
        description=(
            "Up to 100 task ids, looked up in one request. Leave out to check every task this server "
            "started since it launched (recovers a task whose call was cut off before it answered)."
        ),
    )


class ListModelsInput(_Strict):
    """kling_list_models takes no arguments."""


# --- Tool outputs ---------------------------------------------------------------------------

TaskState = Literal["succeeded", "failed", "running"]


class TaskFailure(_Model):
    code: str | None = Field(None, description="The API's error code.")
    message: str = Field(description="The API's own words.")


class VideoTask(_Model):
    """A Kling task as this server last saw it."""

    task_id: str
    state: TaskState = Field(
        description="'succeeded' (video ready), 'failed', or 'running' (still generating)."
    )
    upstream_state: str | None = Field(None, description="The state exactly as the API spelled it.")
    video_url: str | None = Field(None, description="Signed download link; it expires, so save the file.")
    video_id: str | None = Field(None, description="Pass to kling_extend_video or kling_lip_sync.")
    duration: float | None = Field(None, description="Length of the video in seconds.")
    trace_id: str | None = Field(None, description="Quote it to AceDataCloud support.")
    error: TaskFailure | None = None
    waited_seconds: float = Field(0, description="How long this call waited.")
    next_step: str = Field(description="What to do now.")
    demo: bool = Field(
        False, description="True when made by the local emulator (demo mode): not a real video."
    )


class TaskBatch(_Model):
    tasks: list[VideoTask]
    missing: list[str] = Field(description="Requested ids the API does not know.")


class ModelInfo(_Model):
    name: str
    durations: list[int] = Field(description="Accepted values of duration, in seconds.")
    duration_text: str
    modes: list[Mode]
    native_audio_modes: list[Mode] = Field(
        description="Modes in which generate_audio works; empty: no audio."
    )
    omni_references: bool = Field(description="Takes image_list / video_list references.")
    guidance: bool = Field(description="Takes negative_prompt, cfg_scale and camera_control.")
    tools: list[str]
    notes: str

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> ModelInfo:
        return cls(
            name=spec.name,
            durations=list(spec.durations),
            duration_text=describe_durations(spec),
            modes=list(spec.modes),
            native_audio_modes=list(spec.audio_modes),
            omni_references=spec.omni_references,
            guidance=spec.guidance,
            tools=["kling_generate_video", "kling_generate_video_from_image", "kling_extend_video"],
            notes=spec.notes,
        )


class ModelCatalog(_Model):
    default_model: str
    models: list[ModelInfo]
    extend_note: str = Field(
        "Sources disagree on which models can extend; kling-mcp lets the API decide and relays its answer.",
    )
