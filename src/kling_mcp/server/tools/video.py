"""The video tools: text to video, image to video, extend, Turbo, storyboards and saved assets.

Each input model is its tool's published schema, checks every rule of the wire contract before
anything is sent (the rules between parameters through `capabilities`), and knows its request
body: `endpoint` and `payload()` are where a parameter goes on the wire.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, model_validator

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
from kling_mcp.server.tools.common import PAID, PAID_WITH_MEDIA, GenerationRequest, StrictModel, check
from kling_mcp.server.tools.generation import paid_tool

VideoModel = Literal[VIDEO_MODELS]  # type: ignore[valid-type]
StoryboardModel = Literal[STORYBOARD_MODELS]  # type: ignore[valid-type]
ASSET_MODELS = tuple(dict.fromkeys(SUBJECT_MODELS + VOICE_MODELS))
AssetModel = Literal[ASSET_MODELS]  # type: ignore[valid-type]
CameraAxis = Literal["horizontal", "vertical", "pan", "tilt", "roll", "zoom"]
GUIDANCE_FIELDS = ("negative_prompt", "cfg_scale", "camera_control")


def given(request: StrictModel, names: tuple[str, ...]) -> list[str]:
    return [name for name in names if getattr(request, name, None) is not None]


# --- Parts of requests ----------------------------------------------------------------------


class CameraControl(StrictModel):
    type: Literal["simple", "down_back", "forward_up", "left_turn_forward", "right_turn_forward"]
    config: dict[CameraAxis, Annotated[float, Field(ge=-1, le=1)]] | None = Field(
        None, description='For "simple": one axis, e.g. {"zoom": 0.5}.'
    )


class Element(StrictModel):
    element_id: Identifier = Field(description="From your Kling subject library.")


class Voice(StrictModel):
    voice_id: Identifier = Field(description="From your Kling voice library.")


class ImageReference(StrictModel):
    image_url: ImageSource
    type: FrameType | None = Field(None, description="Use as the first or end frame.")


class VideoReference(StrictModel):
    video_url: VideoSource = Field(description="MP4/MOV, 3-10 s, 720-2160 px, 24-60 fps, at most 200 MB.")
    refer_type: Literal["feature", "base"] = Field(
        "base", description="'base' edits it; 'feature' copies its style."
    )
    keep_original_sound: Literal["yes", "no"] | None = None


class _Prompted(StrictModel):
    prompt: Prompt = Field(description="What happens: subject, motion, camera, mood.")


NegativePrompt = Annotated[OptionalPrompt, Field(None, description="What to avoid.")]
CfgScale = Annotated[float | None, Field(None, ge=0, le=1, description="Prompt adherence, 0 to 1.")]
StartImage = Annotated[ImageSource | None, Field(None, description="The first frame.")]
EndImage = Annotated[ImageSource | None, Field(None, description="The last frame (needs a first frame).")]


class VideoOptions(StrictModel):
    uses_server_defaults: ClassVar[bool] = True

    model: VideoModel = Field("kling-v2-master", description="See kling_list_models.")
    mode: Mode = Field("std", description="'pro' is higher quality.")
    aspect_ratio: AspectRatio = "16:9"
    duration: int = Field(5, ge=3, le=15, description="Seconds.")
    generate_audio: bool | None = Field(None, description="Native sound.")
    negative_prompt: NegativePrompt = None
    cfg_scale: CfgScale = None
    camera_control: JsonText[CameraControl] | None = None
    element_list: JsonText[list[Element]] | None = Field(None, description="Saved subjects.")
    image_list: JsonText[list[ImageReference]] | None = Field(None, description="Omni reference images.")
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


VIDEO_RULES = f"""Rules: duration {duration_rule()}. mode 4k only \
{four_k_rule()}, not with references. generate_audio only {audio_rule()}, not with video_list. \
image_list/video_list only {omni_rule()}, and then no negative_prompt, cfg_scale or camera_control \
({no_guidance_models()} never takes them). Reference images plus element_list subjects at most \
{MAX_REFERENCES}, or {MAX_REFERENCES_WITH_VIDEO} with a reference video."""


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

    start_image_url: ImageSource | None = Field(None, description="The image to animate: the first frame.")
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
Omni references (image_list, video_list) or saved subjects (element_list).

Use it when no image must be the first frame (else kling_generate_video_from_image). To continue a \
video: kling_extend_video; fast drafts: kling_generate_turbo_video; several shots: \
kling_generate_storyboard.

{PAID_WITH_MEDIA}

{VIDEO_RULES}"""

GENERATE_VIDEO_FROM_IMAGE = f"""Animate a start image into a video, or make a transition from a \
start image to an end image; the prompt describes the motion (image-to-video).

Use it when an image must be the first frame (optionally another the last); without one use \
kling_generate_video. start_image_url is required (with Omni models an image_list item typed \
first_frame may stand in). Match aspect_ratio to the image; describe what moves, not what it shows.

{PAID_WITH_MEDIA}

{VIDEO_RULES} A reference video with refer_type 'base' cannot be combined with frames."""


# --- Extend ---------------------------------------------------------------------------------


class ExtendVideoInput(GenerationRequest, _Prompted):
    endpoint = "/kling/videos"

    video_id: Identifier = Field(description="video_id of a Kling result (not its task_id or URL).")
    model: VideoModel | None = None
    mode: Mode | None = None
    duration: int | None = Field(None, ge=3, le=15, description="Seconds to add.")
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


EXTEND_VIDEO = f"""Continue an existing Kling video with more footage that follows a new prompt.

Use it to make a video longer: pass the video_id of a finished result, then extend the new result for \
more. model, mode and duration left out keep the original's. Which models can be extended is \
disputed, so the API decides and its message is relayed.

{PAID}"""


# --- Turbo ----------------------------------------------------------------------------------


class TurboVideoInput(GenerationRequest, _Prompted):
    endpoint = "/kling/videos"

    start_image_url: StartImage = None
    mode: Literal["std", "pro"] = Field("std", description="'std' 720p, 'pro' 1080p.")
    duration: int = Field(5, ge=3, le=15, description="Seconds.")
    aspect_ratio: AspectRatio = "16:9"

    def payload(self) -> dict[str, Any]:
        action = "image2video" if self.start_image_url else "text2video"
        return {"action": action, "model": TURBO_MODEL, "generate_audio": True, **super().payload()}


GENERATE_TURBO_VIDEO = f"""Generate a video fast with Kling Turbo ({TURBO_MODEL}): 720p (std) or 1080p \
(pro), 3-15 s, with native sound always on; from a prompt, or animating start_image_url.

Use it for quick drafts and iterations. It takes no end frame, references, negative_prompt, cfg_scale \
or camera control: for those use kling_generate_video or kling_generate_video_from_image.

{PAID_WITH_MEDIA}"""


# --- Storyboard -----------------------------------------------------------------------------


class _ShotOptions(StrictModel):
    """How the storyboard and saved-asset tools frame their video."""

    mode: Mode = "std"
    aspect_ratio: AspectRatio = "16:9"
    generate_audio: bool | None = None
    start_image_url: StartImage = None


class Shot(StrictModel):
    index: int | None = Field(None, ge=1, le=MAX_SHOTS, description="1, 2, 3... in order.")
    prompt: Annotated[str, Text(SHOT_PROMPT_LIMIT)]
    duration: int = Field(ge=1, le=15, description="Seconds.")


class StoryboardInput(GenerationRequest, _ShotOptions, _Prompted):
    endpoint = "/kling/videos"

    shot_type: Literal["intelligence", "customize"] = Field(
        "intelligence", description="'intelligence': the model cuts the prompt into shots."
    )
    multi_prompt: JsonText[list[Shot]] | None = Field(
        None, min_length=1, max_length=MAX_SHOTS, description="The shots, for 'customize'."
    )
    model: StoryboardModel = "kling-v3"
    duration: int = Field(10, ge=3, le=15, description="Seconds, all shots together.")
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


GENERATE_STORYBOARD = f"""Generate one video made of several shots (a storyboard) with \
{" or ".join(STORYBOARD_MODELS)}.

Use it for a short story with cuts. shot_type 'intelligence': one prompt, the model plans the shots. \
'customize': you write 1-{MAX_SHOTS} shots in multi_prompt, each a prompt of at most \
{SHOT_PROMPT_LIMIT} characters and a duration; the shots' durations must add up to duration \
(3-15 s). Optional start and end frames. For a single shot use kling_generate_video.

{PAID_WITH_MEDIA}"""


# --- Saved subjects and voices ----------------------------------------------------------------


class AssetsVideoInput(GenerationRequest, _ShotOptions, _Prompted):
    endpoint = "/kling/videos"

    element_list: JsonText[list[Element]] | None = Field(None, min_length=1, max_length=MAX_SUBJECTS)
    voice_list: JsonText[list[Voice]] | None = Field(None, min_length=1, max_length=MAX_VOICES)
    model: AssetModel = "kling-v3"
    duration: int = Field(5, ge=3, le=15, description="Seconds.")

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


GENERATE_WITH_ASSETS = f"""Generate a video featuring the subjects or voices saved in your Kling \
library: element_list (1-{MAX_SUBJECTS} subjects, models {", ".join(SUBJECT_MODELS)}) or voice_list \
(1-{MAX_VOICES} voices, {", ".join(VOICE_MODELS)} in pro mode with generate_audio true); exactly one \
of the two.

Use it to keep a character or a voice the same across videos. With voices the prompt says where each \
speaks as <<<voice_1>>>, <<<voice_2>>> (numbered in voice_list order), e.g. "<<<voice_1>>> says \
hello". Ids come from your Kling library; optional start_image_url as the first frame.

{PAID_WITH_MEDIA}"""


TOOLS = (
    paid_tool("kling_generate_video", "Generate video from text", TextToVideoInput, GENERATE_VIDEO),
    paid_tool(
        "kling_generate_video_from_image",
        "Generate video from image",
        ImageToVideoInput,
        GENERATE_VIDEO_FROM_IMAGE,
    ),
    paid_tool("kling_extend_video", "Extend a video", ExtendVideoInput, EXTEND_VIDEO),
    paid_tool("kling_generate_turbo_video", "Generate a Turbo video", TurboVideoInput, GENERATE_TURBO_VIDEO),
    paid_tool("kling_generate_storyboard", "Generate a storyboard", StoryboardInput, GENERATE_STORYBOARD),
    paid_tool(
        "kling_generate_with_assets",
        "Generate with saved subjects or voices",
        AssetsVideoInput,
        GENERATE_WITH_ASSETS,
    ),
)
