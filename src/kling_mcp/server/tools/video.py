"""The video tools: text to video, image to video, extend, Turbo, storyboards and saved assets.

Each input model is its tool's published schema, checks every rule of the wire contract before
anything is sent (the rules between parameters through `capabilities`), and knows its request
body: `endpoint` and `payload()` are where a parameter goes on the wire. An extension also takes
what it keeps of the original video from the journal (`original_settings`).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, InputRequiredResult, TextContent
from pydantic import Field, WithJsonSchema, model_validator

from kling_mcp.domain.capabilities import (
    MAX_REFERENCES,
    MAX_REFERENCES_WITH_VIDEO,
    MAX_SHOTS,
    MAX_SUBJECTS,
    MAX_VOICES,
    SHOT_PROMPT_LIMIT,
    STORYBOARD_MODELS,
    SUBJECT_MODELS,
    TURBO_MODEL,
    VIDEO_MODELS,
    VOICE_MODELS,
    AspectRatio,
    FrameType,
    GenerationPlan,
    Mode,
    audio_rule,
    duration_rule,
    four_k_rule,
    no_guidance_models,
    omni_rule,
    plan_problems,
    storyboard_problems,
    subject_problems,
    voice_problems,
)
from kling_mcp.domain.fields import (
    Identifier,
    ImageSource,
    JsonText,
    OptionalPrompt,
    Prompt,
    Text,
    VideoSource,
)
from kling_mcp.server.state import AppState
from kling_mcp.server.tools.common import GenerationRequest, StrictModel, check, paid
from kling_mcp.server.tools.generation import generate, paid_tool
from kling_mcp.server.tools.spec import parse_arguments
from kling_mcp.tasks.callers import Caller

if TYPE_CHECKING:
    from kling_mcp.tasks.service import TaskService

VideoModel = Literal[VIDEO_MODELS]  # type: ignore[valid-type]
StoryboardModel = Literal[STORYBOARD_MODELS]  # type: ignore[valid-type]
ASSET_MODELS = tuple(dict.fromkeys(SUBJECT_MODELS + VOICE_MODELS))
AssetModel = Literal[ASSET_MODELS]  # type: ignore[valid-type]
CameraAxis = Literal["horizontal", "vertical", "pan", "tilt", "roll", "zoom"]
GUIDANCE_FIELDS = ("negative_prompt", "cfg_scale", "camera_control")


def given(request: StrictModel, names: tuple[str, ...]) -> list[str]:
    return [name for name in names if getattr(request, name, None) is not None]


# --- Parts of requests ----------------------------------------------------------------------

DEFAULT_DURATION = 5
Ratio = Annotated[AspectRatio, Field(description="16:9 landscape, 9:16 portrait, 1:1 square.")]
VideoMode = Annotated[
    Mode,
    Field(description="'std' fast, cheapest; 'pro' better, slower, costs more; '4k' native 4K, costs most."),
]
Audio = Annotated[
    bool | None, Field(description="true: Kling makes the sound too (costs more); else silent.")
]
Duration = Annotated[int, Field(ge=3, le=15, description="Length in seconds; longer costs more.")]
CAMERA_CONFIG = {
    "type": "object",
    "description": 'For "simple": one axis from -1 to 1, e.g. {"zoom": 0.5}. Axes: horizontal, vertical, '
    "pan, tilt, roll, zoom.",
}


class CameraControl(StrictModel):
    type: Literal["simple", "down_back", "forward_up", "left_turn_forward", "right_turn_forward"]
    # Checked in full, published as words: the axes' schema would cost more than it says.
    config: Annotated[
        dict[CameraAxis, Annotated[float, Field(ge=-1, le=1)]] | None, WithJsonSchema(CAMERA_CONFIG)
    ] = None


class Element(StrictModel):
    element_id: Identifier


class Voice(StrictModel):
    voice_id: Identifier


class ImageReference(StrictModel):
    image_url: ImageSource
    type: FrameType | None = Field(None, description="Use it as this frame.")


class VideoReference(StrictModel):
    video_url: VideoSource = Field(description="MP4/MOV, 3-10 s, 720-2160 px, 24-60 fps, up to 200 MB.")
    refer_type: Literal["feature", "base"] = Field(
        "base", description="'base': edit it; 'feature': borrow its style."
    )
    keep_original_sound: Literal["yes", "no"] | None = Field(None, description="'yes': keep its sound.")


class _Prompted(StrictModel):
    prompt: Prompt = Field(description="What happens: subject, action, camera, style, mood.")


NegativePrompt = Annotated[
    OptionalPrompt, Field(None, description="What must not appear, e.g. 'blur, text'.")
]
CfgScale = Annotated[
    float | None, Field(None, ge=0, le=1, description="Prompt adherence: 0 loose to 1 strict.")
]
StartImage = Annotated[ImageSource | None, Field(None, description="Optional first frame to animate.")]
EndImage = Annotated[ImageSource | None, Field(None, description="The last frame; needs a first frame.")]


class VideoOptions(StrictModel):
    uses_server_defaults: ClassVar[bool] = True

    model: VideoModel = Field(
        "kling-v2-master", description="See the rules; kling_list_models compares the models."
    )
    mode: VideoMode = "std"
    aspect_ratio: Ratio = "16:9"
    duration: Duration = DEFAULT_DURATION
    generate_audio: Audio = None
    negative_prompt: NegativePrompt = None
    cfg_scale: CfgScale = None
    camera_control: JsonText[CameraControl] | None = Field(
        None, description="A camera move: a preset type, or 'simple'."
    )
    element_list: JsonText[list[Element]] | None = Field(
        None, description="Subjects saved in your Kling library."
    )
    image_list: JsonText[list[ImageReference]] | None = Field(
        None, description="Omni reference images (subject, style), or a frame by type."
    )
    video_list: JsonText[list[VideoReference]] | None = Field(
        None, max_length=1, description="One Omni reference video."
    )

    def plan(self, frames: tuple[str | None, str | None] | None = None) -> GenerationPlan:
        """The rules' view of this request; `frames` are the image tool's start and end images."""
        images = self.image_list or []
        videos = self.video_list or []
        start_image, end_image = frames or (None, None)
        return GenerationPlan(
            model=self.model,
            mode=self.mode,
            duration=self.duration,
            generate_audio=bool(self.generate_audio),
            guidance_fields=given(self, GUIDANCE_FIELDS),
            first_frames=bool(start_image) + sum(image.type == "first_frame" for image in images),
            end_frames=bool(end_image) + sum(image.type == "end_frame" for image in images),
            reference_images=len(images),
            subjects=len(self.element_list or []),
            reference_videos=len(videos),
            base_video=any(video.refer_type == "base" for video in videos),
            first_frame_field="start_image_url" if frames else "image_list",
            end_frame_field="end_image_url" if frames else "image_list",
        )


VIDEO_RULES = f"""Rules: duration {duration_rule()}. 4k only on {four_k_rule()}, without references. \
generate_audio only on {audio_rule()}; not with video_list. image_list/video_list only on {omni_rule()}, \
then without negative_prompt, cfg_scale, camera_control ({no_guidance_models()}: never). Reference images \
+ subjects: at most {MAX_REFERENCES} ({MAX_REFERENCES_WITH_VIDEO} with a video)."""
VIDEO_PRICE = "model, mode, duration and audio"


# --- Text and image to video ----------------------------------------------------------------


class TextToVideoInput(GenerationRequest, VideoOptions, _Prompted):
    endpoint = "/kling/videos"

    @model_validator(mode="after")
    def _rules(self) -> TextToVideoInput:
        check(plan_problems(self.plan()))
        return self

    def payload(self) -> dict[str, Any]:
        return {"action": "text2video", **super().payload()}


class ImageToVideoInput(GenerationRequest, VideoOptions, _Prompted):
    endpoint = "/kling/videos"

    start_image_url: ImageSource | None = Field(None, description="The first frame, to animate (see above).")
    end_image_url: EndImage = None

    @model_validator(mode="after")
    def _rules(self) -> ImageToVideoInput:
        plan = self.plan(frames=(self.start_image_url, self.end_image_url))
        problems = plan_problems(plan)
        if not (plan.first_frames or plan.end_frames):
            problems.insert(0, "start_image_url: required; give the image to animate.")
        check(problems)
        return self

    def payload(self) -> dict[str, Any]:
        # An Omni first frame given only as an image_list item is a text2video request on the wire.
        action = "image2video" if self.start_image_url else "text2video"
        return {"action": action, **super().payload()}


GENERATE_VIDEO = f"""Generate a Kling video from a text prompt (text-to-video), optionally guided by \
Omni references (image_list, video_list) and saved subjects (element_list).

Use it when no image must be the first frame (else kling_generate_video_from_image). Continue a video: \
kling_extend_video; a quick draft with sound: kling_generate_turbo_video; several shots: \
kling_generate_storyboard; saved voices, or subjects without references: kling_generate_with_assets.

{paid(VIDEO_PRICE)}

{VIDEO_RULES}"""

GENERATE_VIDEO_FROM_IMAGE = f"""Animate a start image into a video, or a transition from a start \
image to an end image; the prompt describes the motion (image-to-video).

Use it when an image must be the first frame; without one use kling_generate_video. Give \
start_image_url; only with an Omni model may an image_list item typed first_frame stand in. Match \
aspect_ratio to the image; describe what moves, not what is seen.

{paid(VIDEO_PRICE)}

{VIDEO_RULES} A 'base' reference video takes no frames."""


# --- Extend ---------------------------------------------------------------------------------

EXTEND = "kling_extend_video"
KEPT = ("model", "mode", "duration")
"""What an extension keeps of the original video when the call leaves it out."""


class ExtendVideoInput(GenerationRequest, _Prompted):
    endpoint = "/kling/videos"

    prompt: Prompt = Field(description="What happens next, in the added footage.")
    video_id: Identifier = Field(description="A succeeded result's video_id (not its task_id or URL).")
    model: VideoModel | None = Field(None, description="The Kling model; left out: the original's.")
    mode: Mode | None = Field(
        None,
        description="'std' fastest, cheapest; 'pro' better, costs more; '4k' kling-v3 models. Left out: "
        "the original's.",
    )
    duration: int | None = Field(
        None,
        ge=3,
        le=15,
        description="Seconds to add: 5 or 10, 3-15 on kling-v3 models; left out: the original's.",
    )
    negative_prompt: NegativePrompt = None
    cfg_scale: CfgScale = None

    @model_validator(mode="after")
    def _rules(self) -> ExtendVideoInput:
        if self.model is not None:
            guidance = given(self, GUIDANCE_FIELDS)
            plan = GenerationPlan(self.model, self.mode, self.duration, guidance_fields=guidance)
            check(plan_problems(plan))
        return self

    def payload(self) -> dict[str, Any]:
        return {"action": "extend", **super().payload()}


async def original_settings(tasks: TaskService, owner: str, video_id: str) -> dict[str, Any] | None:
    """The model, mode and duration the original video `video_id` was made with, from the journal
    of `owner`'s tasks (none of them when another endpoint made it); None when this server did not."""
    record = await tasks.with_video(video_id, owner=owner)
    if record is None:
        return None
    if record.endpoint != ExtendVideoInput.endpoint:  # a lip-sync's "mode" is not a video's
        return {}
    return {name: record.body[name] for name in KEPT if name in record.body}


async def extend_video(
    request: ExtendVideoInput, app: AppState, ctx: Context, caller: Caller
) -> CallToolResult | InputRequiredResult:
    """kling_extend_video: what the call leaves out of model, mode and duration is the original's,
    or (when this server did not make the original) kling_generate_video's defaults; the answer says which."""
    left_out = [name for name in KEPT if getattr(request, name) is None]
    if not left_out:
        return await generate(request, app, ctx, caller, tool=EXTEND)
    original = await original_settings(app.tasks, caller.owner, request.video_id)
    defaults = {
        "model": app.settings.default_model,
        "mode": app.settings.default_mode,
        "duration": DEFAULT_DURATION,
    }
    filled = {name: (original or {}).get(name, defaults[name]) for name in left_out}
    note = _kept_note(request.video_id, filled, original)
    try:
        complete = parse_arguments(
            EXTEND, ExtendVideoInput, {**request.model_dump(exclude_none=True), **filled}
        )
    except ToolError as error:
        raise ToolError(f"{error}\n{note} Set model, mode or duration to change them.") from None
    return _with_note(await generate(complete, app, ctx, caller, tool=EXTEND), note)


def _kept_note(video_id: str, filled: dict[str, Any], original: dict[str, Any] | None) -> str:
    known = original or {}
    kept = {name: value for name, value in filled.items() if name in known}
    defaulted = {name: value for name, value in filled.items() if name not in known}
    parts = [f"Kept from the original video: {_terms(kept)}."] if kept else []
    if defaulted:
        why = (
            "not recorded for the original"
            if original is not None
            else f"this server did not make {video_id}"
        )
        parts.append(f"kling_generate_video's defaults ({why}): {_terms(defaulted)}.")
    return " ".join(parts)


def _terms(values: dict[str, Any]) -> str:
    return ", ".join(f"{name} {value}{' s' if name == 'duration' else ''}" for name, value in values.items())


def _with_note(
    result: CallToolResult | InputRequiredResult, note: str
) -> CallToolResult | InputRequiredResult:
    """`result` with `note` before its text."""
    if isinstance(result, CallToolResult) and result.content and isinstance(result.content[0], TextContent):
        first = result.content[0]
        result.content[0] = first.model_copy(update={"text": f"{note}\n{first.text}"})
    return result


EXTEND_VIDEO = f"""Continue a finished Kling video with more footage following a new prompt.

Use it to make a video longer (extend each new result for more). model, mode and duration left out \
are the original's if this server made it, else kling_generate_video's defaults, as the answer says. \
Which models extend is disputed: the API decides. To animate an image: kling_generate_video_from_image.

{paid("model, mode and duration", media=False)}"""


# --- Turbo ----------------------------------------------------------------------------------


class TurboVideoInput(GenerationRequest, _Prompted):
    endpoint = "/kling/videos"

    start_image_url: StartImage = None
    mode: Literal["std", "pro"] = Field("std", description="'std' 720p; 'pro' 1080p, costs more.")
    duration: Duration = DEFAULT_DURATION
    aspect_ratio: Ratio = "16:9"

    def payload(self) -> dict[str, Any]:
        action = "image2video" if self.start_image_url else "text2video"
        return {"action": action, "model": TURBO_MODEL, "generate_audio": True, **super().payload()}


GENERATE_TURBO_VIDEO = f"""Generate a video fast with Kling Turbo ({TURBO_MODEL}), sound always on, \
from a prompt or animating start_image_url.

Use it for quick drafts. It takes no end frame, references, negative_prompt, cfg_scale \
or camera move: for those use kling_generate_video or kling_generate_video_from_image.

{paid("mode and duration")}"""


# --- Storyboard -----------------------------------------------------------------------------


class _ShotOptions(StrictModel):
    """How the storyboard and saved-asset tools frame their video."""

    mode: VideoMode = "std"
    aspect_ratio: Ratio = "16:9"
    generate_audio: Audio = None
    start_image_url: StartImage = None


class Shot(StrictModel):
    index: int | None = Field(None, ge=1, le=MAX_SHOTS, description="Optional; 1, 2, 3...")
    prompt: Annotated[str, Text(SHOT_PROMPT_LIMIT)] = Field(description="What this shot shows.")
    duration: int = Field(ge=1, le=15, description="Its seconds.")


class StoryboardInput(GenerationRequest, _ShotOptions, _Prompted):
    endpoint = "/kling/videos"

    prompt: Prompt = Field(description="The story: subject, setting, style, mood.")
    shot_type: Literal["intelligence", "customize"] = Field(
        "intelligence", description="'intelligence': the model cuts the story into shots; 'customize': yours."
    )
    multi_prompt: JsonText[list[Shot]] | None = Field(
        None, min_length=1, max_length=MAX_SHOTS, description="With 'customize': the shots, in order."
    )
    model: StoryboardModel = Field(
        "kling-v3", description="The Kling model; kling_list_models compares them."
    )
    duration: int = Field(10, ge=3, le=15, description="Seconds, all shots together; longer costs more.")
    end_image_url: EndImage = None

    @model_validator(mode="after")
    def _rules(self) -> StoryboardInput:
        shots = self.multi_prompt or []
        problems = storyboard_problems(
            self.model, [(shot.index, shot.duration) for shot in shots], self.duration
        )
        if self.shot_type == "customize" and not shots:
            problems.append("multi_prompt: required with shot_type 'customize'; list the shots.")
        if self.shot_type == "intelligence" and shots:
            problems.append("multi_prompt: only with shot_type 'customize'; set it, or leave the shots out.")
        plan = GenerationPlan(
            self.model,
            self.mode,
            self.duration,
            generate_audio=bool(self.generate_audio),
            first_frames=bool(self.start_image_url),
            end_frames=bool(self.end_image_url),
            first_frame_field="start_image_url",
            end_frame_field="end_image_url",
        )
        check(problems + plan_problems(plan))
        return self

    def payload(self) -> dict[str, Any]:
        body = super().payload()
        if self.multi_prompt:
            body["multi_prompt"] = [
                {"index": position, "prompt": shot.prompt, "duration": shot.duration}
                for position, shot in enumerate(self.multi_prompt, 1)
            ]
        action = "image2video" if self.start_image_url else "text2video"
        return {"action": action, "multi_shot": True, **body}


GENERATE_STORYBOARD = f"""Generate one video of several shots (a storyboard) with \
{" or ".join(STORYBOARD_MODELS)}.

Use it for a short story with cuts; for one shot use kling_generate_video. shot_type 'intelligence': \
one prompt, the model plans the shots; 'customize': 1-{MAX_SHOTS} shots in multi_prompt whose \
durations add up to duration.

{paid("mode, duration and audio")}"""


# --- Saved subjects and voices ----------------------------------------------------------------


class AssetsVideoInput(GenerationRequest, _ShotOptions, _Prompted):
    endpoint = "/kling/videos"

    element_list: JsonText[list[Element]] | None = Field(
        None, min_length=1, max_length=MAX_SUBJECTS, description="Saved subjects to feature."
    )
    voice_list: JsonText[list[Voice]] | None = Field(
        None, min_length=1, max_length=MAX_VOICES, description="Saved voices that speak."
    )
    model: AssetModel = Field("kling-v3", description="Which takes subjects or voices: see above.")
    duration: int = Field(
        DEFAULT_DURATION,
        ge=3,
        le=15,
        description="Seconds: 3-15 on kling-v3 models, 5 or 10 on kling-v2-6, 5 on kling-o1.",
    )

    @model_validator(mode="after")
    def _rules(self) -> AssetsVideoInput:
        if (self.element_list is None) == (self.voice_list is None):
            check(["element_list / voice_list: give exactly one of them."])
        problems = []
        if self.element_list is not None:
            problems += subject_problems(self.model)
        if self.voice_list is not None:
            audio = bool(self.generate_audio)
            problems += voice_problems(self.model, self.mode, audio, self.prompt, len(self.voice_list))
        plan = GenerationPlan(
            self.model,
            self.mode,
            self.duration,
            generate_audio=bool(self.generate_audio) and self.voice_list is None,
            first_frames=bool(self.start_image_url),
            subjects=len(self.element_list or []),
            first_frame_field="start_image_url",
        )
        check(problems + plan_problems(plan))
        return self

    def payload(self) -> dict[str, Any]:
        action = "image2video" if self.start_image_url else "text2video"
        return {"action": action, **super().payload()}


GENERATE_WITH_ASSETS = f"""Generate a video featuring subjects or voices saved in your Kling library: \
element_list (1-{MAX_SUBJECTS} subjects; {", ".join(SUBJECT_MODELS)}) or voice_list (1-{MAX_VOICES} voices; \
{", ".join(VOICE_MODELS)}, pro, generate_audio true), exactly one of the two.

Use it to keep a character or voice the same across videos. With voices the prompt places each as \
<<<voice_1>>>, <<<voice_2>>> (voice_list order), e.g. "<<<voice_1>>> says hi". To mix subjects with \
Omni references use kling_generate_video's element_list.

{paid("model, mode, duration and audio")}"""


TOOLS = (
    paid_tool("kling_generate_video", "Generate video from text", TextToVideoInput, GENERATE_VIDEO),
    paid_tool(
        "kling_generate_video_from_image",
        "Generate video from image",
        ImageToVideoInput,
        GENERATE_VIDEO_FROM_IMAGE,
    ),
    # The extension's own handler fills in what it keeps of the original, then generates as the others do.
    dataclasses.replace(
        paid_tool(EXTEND, "Extend a video", ExtendVideoInput, EXTEND_VIDEO), handler=extend_video
    ),
    paid_tool("kling_generate_turbo_video", "Generate a Turbo video", TurboVideoInput, GENERATE_TURBO_VIDEO),
    paid_tool("kling_generate_storyboard", "Generate a storyboard", StoryboardInput, GENERATE_STORYBOARD),
    paid_tool(
        "kling_generate_with_assets",
        "Generate with saved subjects or voices",
        AssetsVideoInput,
        GENERATE_WITH_ASSETS,
    ),
)
