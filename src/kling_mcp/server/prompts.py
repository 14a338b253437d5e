"""MCP prompts that help a person get good videos."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.prompts import Prompt
from mcp.server.mcpserver.prompts.base import PromptArgument

from kling_mcp.domain.capabilities import MODELS, audio_rule, describe_durations, omni_rule

MOTION_ADVICE = """How to write a Kling prompt that moves:
- Lead with the subject and one clear action: "A red fox trots through fresh snow, then stops and looks back."
- Say how the camera moves ("slow dolly in", "orbit left", "handheld tracking shot") or set camera_control.
- Give motion a pace and an order: "first ... then ...", "slowly", "in one continuous shot".
- Name light, mood and style once: "golden hour, soft haze, 35 mm film look".
- For image-to-video, describe what changes, not what the image already shows.
- Keep one scene per clip; make longer stories by extending (kling_extend_video) shot by shot.
- Put what to avoid in negative_prompt ("blur, distorted hands, text"), not in the prompt."""


def register_prompts(server: MCPServer[Any]) -> None:
    for name, title, render, arguments in PROMPTS:
        parameters = inspect.signature(render).parameters
        server.add_prompt(
            Prompt(
                name=name,
                title=title,
                description=inspect.getdoc(render),
                arguments=[
                    PromptArgument(
                        name=argument,
                        description=description,
                        required=parameters[argument].default is inspect.Parameter.empty,
                    )
                    for argument, description in arguments.items()
                ],
                fn=render,
            )
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


PromptFunction = Callable[..., str]
# (name, title, function, {argument: what to fill in}); the function's docstring describes the prompt.
PROMPTS: tuple[tuple[str, str, PromptFunction, dict[str, str]], ...] = (
    ("kling_choose_tool", "Choose a Kling tool and model", choose_tool, {"goal": "What you want to make"}),
    (
        "kling_image_to_video",
        "Workflow: animate an image",
        image_to_video,
        {"image_url": "Public URL of the image", "motion": "What should move, and how"},
    ),
    (
        "kling_long_video",
        "Workflow: a long video by extension",
        long_video,
        {"story": "What happens, start to end", "target_seconds": "Rough total length (default 30)"},
    ),
    (
        "kling_talking_avatar",
        "Workflow: a talking avatar",
        talking_avatar,
        {"portrait_url": "Public URL of the portrait", "script": "What the avatar says"},
    ),
    ("kling_prompt_advice", "Write prompts for video motion", prompt_advice, {"idea": "Your video idea"}),
)
