"""MCP prompts that help a person get good videos.

A `prompts/get` of a name the server does not have, without a required argument or with one the
prompt does not take, is the caller's mistake: it is answered as invalid params (-32602), naming
what to fix, in both protocol eras (the SDK would answer an internal error, or code 0 before
2026-07-28).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.prompts import Prompt
from mcp.server.mcpserver.prompts.base import PromptArgument
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS
from mcp.types import Prompt as MCPPrompt

from kling_mcp.domain.capabilities import MODELS, audio_rule, describe_durations, omni_rule
from kling_mcp.domain.fields import quote

MOTION_ADVICE = """How to write a Kling prompt that moves:
- Lead with the subject and one clear action: "A red fox trots through fresh snow, then stops and looks back."
- Say how the camera moves ("slow dolly in", "orbit left", "handheld tracking shot") or set camera_control.
- Give motion a pace and an order: "first ... then ...", "slowly", "in one continuous shot".
- Name light, mood and style once: "golden hour, soft haze, 35 mm film look".
- For image-to-video, describe what changes, not what the image already shows.
- Keep one scene per clip; make longer stories by extending (kling_extend_video) shot by shot.
- Put what to avoid in negative_prompt ("blur, distorted hands, text"), not in the prompt."""

PromptFunction = Callable[..., str]


@dataclass(frozen=True)
class PromptSpec:
    """A prompt: `render`'s docstring describes it and its parameters are the prompt's arguments."""

    name: str
    title: str
    render: PromptFunction
    arguments: dict[str, str]
    """What to fill in, for each parameter of `render`."""
    suggestions: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """What completion offers for some arguments, most useful first."""

    def prompt(self) -> Prompt:
        parameters = inspect.signature(self.render).parameters
        return Prompt(
            name=self.name,
            title=self.title,
            description=inspect.getdoc(self.render),
            arguments=[
                PromptArgument(
                    name=argument,
                    description=description,
                    required=parameters[argument].default is inspect.Parameter.empty,
                )
                for argument, description in self.arguments.items()
            ],
            fn=self.render,
        )


def choose_tool(goal: str) -> str:
    """Pick the right Kling tool and model for what you want to make."""
    models = "\n".join(f"- {spec.name}: {describe_durations(spec)}. {spec.notes}" for spec in MODELS.values())
    return f"""I want to make this with Kling: {goal}

Help me choose before generating anything (every generation costs credits):
- Only words? kling_generate_video. An image that must be the first frame? kling_generate_video_from_image
  (add end_image_url for a transition). Longer than one clip? Generate, then kling_extend_video.
- A character that should copy a real person's movement? kling_generate_motion.
- A portrait that should speak? kling_talking_photo. New speech on an existing video? kling_lip_sync.
- A quick draft with sound? kling_generate_turbo_video. Several shots with cuts? kling_generate_storyboard.
  A subject or voice saved in my Kling library? kling_generate_with_assets.
- A product ad? kling_goods_studio (no presenter) or kling_video_commerce (a presenter speaks a script).
- Images may be files on my computer (an absolute path), not only URLs.
Models:
{models}
Native audio: {audio_rule()}. Omni references (image_list, video_list): {omni_rule()}.
Recommend one tool, a model, mode, duration and aspect ratio, and draft the prompt. Ask me before you
start a generation."""


def image_to_video(image_url: str, motion: str) -> str:
    """Animate one image: a worked workflow."""
    return f"""Animate this image with Kling: {image_url}
The motion I want: {motion}

1. Look at the image's shape and pick aspect_ratio to match (16:9, 9:16 or 1:1).
2. Write a prompt about what moves and how the camera moves (not what the image already shows).
3. Call kling_generate_video_from_image with prompt, start_image_url={image_url}, and aspect_ratio.
4. If it answers state 'running', call kling_get_task with its task_id until it is done.
5. Give me the video_url (it expires: tell me to download it) and keep the video_id for extending.

{MOTION_ADVICE}"""


def long_video(story: str, target_seconds: str = "30") -> str:
    """Build a long video shot by shot with extensions."""
    return f"""Make a video of about {target_seconds} seconds that tells this story: {story}

1. Split the story into shots of 5-10 seconds, one action each, and show me the shot list first.
2. Generate the first shot with kling_generate_video (or kling_generate_video_from_image if I give you
   a first frame).
3. For each next shot call kling_extend_video with the previous result's video_id and that shot's
   prompt. Use each new result's video_id for the following extension.
4. If a call answers state 'running', wait with kling_get_task (never generate the shot again).
5. At the end list every video_url in order; the last one contains the whole video.

{MOTION_ADVICE}"""


def talking_avatar(portrait_url: str, script: str) -> str:
    """Make a talking avatar from one portrait."""
    return f"""Make a talking avatar from this portrait: {portrait_url}
What it should say: {script}

- If I give you an audio URL of the speech, call kling_talking_photo with image_url and audio_url
  (duration 5 or 10 s).
- If I only have the text: first animate the portrait with kling_generate_video_from_image (a calm
  "person looks at the camera and speaks naturally" prompt), then call kling_lip_sync with that
  result's video_id, text=the script, a voice_id, voice_language 'en' or 'zh'.
- Ask me for the voice and language if unclear. Every generation costs credits: confirm first."""


def prompt_advice(idea: str) -> str:
    """Turn an idea into a Kling prompt that describes motion well."""
    return f"""Rewrite this idea as a Kling video prompt: {idea}

{MOTION_ADVICE}

Give me the prompt, a negative_prompt, and a suggested camera_control if useful."""


CAMERA_MOVES = (
    "slow dolly in",
    "slow dolly out",
    "orbit left",
    "orbit right",
    "pan left",
    "pan right",
    "tilt up",
    "crane up",
    "handheld tracking shot",
    "static camera, only the subject moves",
)
LENGTHS = ("15", "20", "30", "45", "60")

PROMPTS = (
    PromptSpec(
        "kling_choose_tool", "Choose a Kling tool and model", choose_tool, {"goal": "What you want to make"}
    ),
    PromptSpec(
        "kling_image_to_video",
        "Workflow: animate an image",
        image_to_video,
        {"image_url": "Public URL of the image", "motion": "What should move, and how"},
        suggestions={"motion": CAMERA_MOVES},
    ),
    PromptSpec(
        "kling_long_video",
        "Workflow: a long video by extension",
        long_video,
        {"story": "What happens, start to end", "target_seconds": "Rough total length (default 30)"},
        suggestions={"target_seconds": LENGTHS},
    ),
    PromptSpec(
        "kling_talking_avatar",
        "Workflow: a talking avatar",
        talking_avatar,
        {"portrait_url": "Public URL of the portrait", "script": "What the avatar says"},
    ),
    PromptSpec(
        "kling_prompt_advice", "Write prompts for video motion", prompt_advice, {"idea": "Your video idea"}
    ),
)


def register_prompts(server: MCPServer[Any], prompts: Sequence[PromptSpec] = PROMPTS) -> None:
    """Add `prompts` (kling-mcp's by default) to `server`, whose bad `prompts/get` requests it refuses."""
    for spec in prompts:
        server.add_prompt(spec.prompt())

    async def refuse_bad_requests(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method == "prompts/get":
            check_prompt_request(await server.list_prompts(), ctx.params or {})
        return await call_next(ctx)

    server.middleware.append(refuse_bad_requests)


def check_prompt_request(prompts: list[MCPPrompt], params: Mapping[str, Any]) -> None:
    """Raise invalid params (-32602) unless `params` names one of `prompts` with the arguments it takes."""
    name = params.get("name")
    taken = prompt_arguments(prompts, name)
    given = params.get("arguments") or {}
    if not isinstance(given, Mapping):
        return  # the SDK's own validation of the request refuses it as invalid params
    missing = [argument for argument, required in taken.items() if required and argument not in given]
    unknown = [quote(argument) for argument in given if argument not in taken]
    if missing or unknown:
        problems = [f"missing {', '.join(missing)}"] if missing else []
        problems += [f"no argument {', '.join(unknown)}"] if unknown else []
        raise MCPError(
            INVALID_PARAMS,
            f"Prompt {name!r}: {'; '.join(problems)}. It takes {', '.join(taken) or 'no arguments'}.",
        )


def prompt_arguments(prompts: list[MCPPrompt], name: object) -> dict[str, bool]:
    """Whether each argument of the prompt `name` among `prompts` is required; invalid params if none is."""
    for prompt in prompts:
        if prompt.name == name:
            return {argument.name: bool(argument.required) for argument in prompt.arguments or []}
    raise MCPError(
        INVALID_PARAMS, f"Unknown prompt {quote(name)}: call prompts/list for the prompts this server has."
    )
