"""What each Kling model can do, and the rules between generation parameters.

This is the one place these facts live: request validation, tool descriptions and
`kling_list_models` all read them from here. The rules are the ones AceDataCloud's own
SDK and MCP server enforce (see shared/kling-api.md); a request that breaks one is
rejected before anything is sent, so it costs nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Mode = Literal["std", "pro", "4k"]
AspectRatio = Literal["16:9", "9:16", "1:1"]
FrameType = Literal["first_frame", "end_frame"]

ALL_MODES: tuple[Mode, ...] = ("std", "pro", "4k")
STANDARD_MODES: tuple[Mode, ...] = ("std", "pro")
FIVE_OR_TEN = (5, 10)
THREE_TO_FIFTEEN = tuple(range(3, 16))

MAX_REFERENCES = 7
MAX_REFERENCES_WITH_VIDEO = 4


@dataclass(frozen=True)
class ModelSpec:
    name: str
    durations: tuple[int, ...]
    modes: tuple[Mode, ...] = STANDARD_MODES
    audio_modes: tuple[Mode, ...] = ()
    """Modes in which `generate_audio` is accepted (none: no native audio)."""
    omni_references: bool = False
    """Takes `image_list` / `video_list` references (Omni)."""
    guidance: bool = True
    """Takes negative_prompt, cfg_scale and camera_control (Omni models only without references)."""
    storyboard: bool = False
    """Makes several shots in one video (multi_shot)."""
    saved_subjects: bool = False
    """Takes subjects saved in the account's library (element_list) in kling_generate_with_assets."""
    saved_voices: tuple[Mode, ...] = ()
    """Modes in which it speaks with the account's saved voices (voice_list)."""
    tool: str | None = None
    """The one tool that uses this model, when the general video tools do not."""
    notes: str = ""


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("kling-v1", FIVE_OR_TEN, notes="First generation; the cheapest."),
        ModelSpec("kling-v1-6", FIVE_OR_TEN, notes="Improved v1."),
        ModelSpec("kling-v2-master", FIVE_OR_TEN, notes="Default: strong motion and prompt following."),
        ModelSpec("kling-v2-1-master", FIVE_OR_TEN, notes="Refined v2 master."),
        ModelSpec("kling-v2-5-turbo", FIVE_OR_TEN, notes="Faster v2.5."),
        ModelSpec(
            "kling-v2-6",
            FIVE_OR_TEN,
            audio_modes=("pro",),
            saved_voices=("pro",),
            notes="Native audio in pro mode.",
        ),
        ModelSpec(
            "kling-v3",
            THREE_TO_FIFTEEN,
            modes=ALL_MODES,
            audio_modes=ALL_MODES,
            storyboard=True,
            saved_subjects=True,
            notes="Any whole duration from 3 to 15 s, native 4K, native audio, storyboards.",
        ),
        ModelSpec(
            "kling-v3-omni",
            THREE_TO_FIFTEEN,
            modes=ALL_MODES,
            audio_modes=ALL_MODES,
            omni_references=True,
            storyboard=True,
            saved_subjects=True,
            notes="v3 plus Omni references (image_list, video_list).",
        ),
        ModelSpec(
            "kling-o1",
            (5,),
            omni_references=True,
            guidance=False,
            saved_subjects=True,
            notes="Omni model: 5 s only, references instead of negative_prompt/cfg_scale/camera_control.",
        ),
        ModelSpec(
            "kling-v3-turbo",
            THREE_TO_FIFTEEN,
            audio_modes=STANDARD_MODES,
            guidance=False,
            tool="kling_generate_turbo_video",
            notes="Fast 720p (std) or 1080p (pro), native audio always on; no end frame or references.",
        ),
    )
}

VIDEO_SPECS = {name: spec for name, spec in MODELS.items() if spec.tool is None}
"""The models of the general video tools (text, image, extend)."""
VIDEO_MODELS = tuple(VIDEO_SPECS)
OMNI_MODELS = tuple(name for name, spec in MODELS.items() if spec.omni_references)
AUDIO_MODELS = tuple(name for name, spec in VIDEO_SPECS.items() if spec.audio_modes)
STORYBOARD_MODELS = tuple(name for name, spec in MODELS.items() if spec.storyboard)
SUBJECT_MODELS = tuple(name for name, spec in MODELS.items() if spec.saved_subjects)
VOICE_MODELS = tuple(name for name, spec in MODELS.items() if spec.saved_voices)
TURBO_MODEL = "kling-v3-turbo"

MAX_SHOTS = 6
SHOT_PROMPT_LIMIT = 512
MAX_SUBJECTS = 3
MAX_VOICES = 2


@dataclass(frozen=True)
class GenerationPlan:
    """The parameters of one generation that the rules look at, whatever tool sent them."""

    model: str
    mode: Mode | None = None
    duration: int | None = None
    generate_audio: bool = False
    guidance_fields: Sequence[str] = ()
    """The names of negative_prompt / cfg_scale / camera_control that were given."""
    first_frames: int = 0
    end_frames: int = 0
    reference_images: int = 0
    """image_list items (Omni references, frames included)."""
    subjects: int = 0
    """element_list subjects."""
    reference_videos: int = 0
    base_video: bool = False
    first_frame_field: str = "image_list"
    """Where this tool takes a first frame from: named in messages about frames."""
    end_frame_field: str = "image_list"

    def frame_sources(self, field: str, kind: FrameType, joiner: str = "and") -> str:
        """Where this tool takes frames of `kind` from, in words."""
        items = f"image_list items typed {kind}"
        return items if field == "image_list" else f"{field} {joiner} {items}"


def describe_durations(spec: ModelSpec) -> str:
    if spec.durations == THREE_TO_FIFTEEN:
        return "a whole number of seconds from 3 to 15"
    return " or ".join(str(duration) for duration in spec.durations) + " seconds"


# --- The rules in words, for descriptions and schemas ---------------------------------------


def duration_rule() -> str:
    """The general video models' durations in a few words: the most common first, then the others."""
    by_rule: dict[str, list[str]] = {}
    for spec in VIDEO_SPECS.values():
        by_rule.setdefault(_seconds(spec), []).append(spec.name)
    common, *special = sorted(by_rule.items(), key=lambda item: -len(item[1]))
    return "; ".join([f"{common[0]} s", *(f"{rule} s on {', '.join(names)}" for rule, names in special)])


def _seconds(spec: ModelSpec) -> str:
    if spec.durations == THREE_TO_FIFTEEN:
        return "3-15"
    return " or ".join(str(duration) for duration in spec.durations)


def four_k_rule() -> str:
    return " and ".join(name for name, spec in VIDEO_SPECS.items() if "4k" in spec.modes)


def audio_rule() -> str:
    return ", ".join(
        name if spec.audio_modes == spec.modes else f"{name} ({'/'.join(spec.audio_modes)} only)"
        for name, spec in VIDEO_SPECS.items()
        if spec.audio_modes
    )


def omni_rule() -> str:
    return " or ".join(OMNI_MODELS)


def no_guidance_models() -> str:
    return ", ".join(name for name, spec in VIDEO_SPECS.items() if not spec.guidance)


def plan_problems(plan: GenerationPlan) -> list[str]:
    """Every rule `plan` breaks, each as a sentence saying what to change. Empty: it may be sent."""
    spec = MODELS[plan.model]
    problems: list[str] = []
    references = plan.reference_images > 0 or plan.reference_videos > 0

    if plan.duration is not None and plan.duration not in spec.durations:
        problems.append(
            f"duration: {spec.name} makes videos of {describe_durations(spec)}, not {plan.duration}."
        )
    if plan.mode is not None and plan.mode not in spec.modes:
        problems.append(f"mode: '{plan.mode}' needs kling-v3 or kling-v3-omni; {spec.name} takes std or pro.")
    if plan.mode == "4k" and references:
        problems.append("mode: '4k' cannot be combined with image_list or video_list; use std or pro.")
    if references and not spec.omni_references:
        problems.append(f"image_list/video_list: Omni references need model {omni_rule()}, not {spec.name}.")
    if plan.guidance_fields and (not spec.guidance or (spec.omni_references and references)):
        fields = ", ".join(plan.guidance_fields)
        reason = f"{spec.name} does not take them" if not spec.guidance else "Omni references are in use"
        problems.append(f"{fields}: leave out ({reason}).")
    if plan.generate_audio:
        problems.extend(_audio_problems(spec, plan))
    problems.extend(_frame_problems(plan))
    return problems


def _audio_problems(spec: ModelSpec, plan: GenerationPlan) -> list[str]:
    if not spec.audio_modes:
        return [f"generate_audio: {spec.name} has no native audio; use one of {', '.join(AUDIO_MODELS)}."]
    problems = []
    mode = plan.mode or "std"
    if mode not in spec.audio_modes:
        problems.append(f"generate_audio: {spec.name} makes audio only in {'/'.join(spec.audio_modes)} mode.")
    if plan.reference_videos:
        problems.append("generate_audio: not available with a reference video (video_list).")
    return problems


def _frame_problems(plan: GenerationPlan) -> list[str]:
    problems = []
    if plan.first_frames > 1:
        sources = plan.frame_sources(plan.first_frame_field, "first_frame")
        problems.append(f"{plan.first_frame_field}: give one first frame only ({sources} count together).")
    if plan.end_frames > 1:
        sources = plan.frame_sources(plan.end_frame_field, "end_frame")
        problems.append(f"{plan.end_frame_field}: give one end frame only ({sources} count together).")
    if plan.end_frames and not plan.first_frames:
        first = plan.frame_sources(plan.first_frame_field, "first_frame", joiner="or")
        problems.append(f"{plan.end_frame_field}: an end frame needs a first frame too; add {first}.")
    if plan.reference_videos > 1:
        problems.append("video_list: give exactly one reference video.")
    if plan.base_video and (plan.first_frames or plan.end_frames):
        problems.append(
            "video_list: a reference video with refer_type 'base' cannot be combined with start or end "
            "frames; use refer_type 'feature' or drop the frames."
        )
    limit = MAX_REFERENCES_WITH_VIDEO if plan.reference_videos else MAX_REFERENCES
    if plan.reference_images + plan.subjects > limit:
        problems.append(
            f"image_list/element_list: at most {limit} reference images and subjects together"
            f"{' when a reference video is present' if plan.reference_videos else ''}; "
            f"{plan.reference_images + plan.subjects} were given."
        )
    return problems


# --- Storyboards and saved assets -----------------------------------------------------------

VOICE_TAG = re.compile(r"<<<voice_(\d+)>>>")


def storyboard_problems(model: str, shots: Sequence[tuple[int | None, int]], total: int) -> list[str]:
    """The rules of a storyboard: `shots` are each shot's (index or None, duration); `total` the video's."""
    problems = []
    if model not in STORYBOARD_MODELS:
        problems.append(f"model: storyboards need {' or '.join(STORYBOARD_MODELS)}, not {model}.")
    misnumbered = [index for position, (index, _) in enumerate(shots, 1) if index not in (None, position)]
    if misnumbered:
        problems.append("multi_prompt: number the shots 1, 2, 3, ... in order (or leave index out).")
    shot_seconds = sum(duration for _, duration in shots)
    if shots and shot_seconds != total:
        problems.append(
            f"multi_prompt: the shots last {shot_seconds} s together but duration is {total} s; "
            "make them equal."
        )
    return problems


def subject_problems(model: str) -> list[str]:
    if model in SUBJECT_MODELS:
        return []
    return [f"element_list: saved subjects need model {', '.join(SUBJECT_MODELS)}, not {model}."]


def voice_problems(model: str, mode: Mode, generate_audio: bool, prompt: str, voices: int) -> list[str]:
    """The rules of saved voices: the model and mode speak, and the prompt names each voice."""
    problems = []
    spec = MODELS[model]
    if mode not in spec.saved_voices:
        where = ", ".join(f"{name} in {'/'.join(MODELS[name].saved_voices)} mode" for name in VOICE_MODELS)
        problems.append(f"voice_list: saved voices need {where}, not {model} in {mode} mode.")
    if not generate_audio:
        problems.append("generate_audio: must be true with voice_list (the voices are the audio).")
    named = {int(number) for number in VOICE_TAG.findall(prompt)}
    missing = [f"<<<voice_{n}>>>" for n in range(1, voices + 1) if n not in named]
    unknown = sorted(n for n in named if not 1 <= n <= voices)
    if missing:
        problems.append(f"prompt: say where each voice speaks; add {', '.join(missing)}.")
    if unknown:
        problems.append(
            f"prompt: names <<<voice_{unknown[0]}>>> but voice_list has {voices} voice(s); "
            "number them from 1 in voice_list order."
        )
    return problems
