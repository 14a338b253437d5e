"""The tools that bring people's own media to life: motion transfer, lip-sync and talking photos."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from kling_mcp.domain.fields import AudioSource, Identifier, ImageSource, OptionalPrompt, Text, VideoSource
from kling_mcp.server.tools.common import GenerationRequest, check, paid
from kling_mcp.server.tools.generation import paid_tool

StdOrPro = Annotated[
    Literal["std", "pro"], Field(description="'std' faster, cheaper; 'pro' better, costs more.")
]
SPEECH_TEXT_LIMIT = 1000
TALKING_PHOTO_MODELS = (
    "kling-v1",
    "kling-v1-6",
    "kling-v2-master",
    "kling-v2-1-master",
    "kling-v2-5-turbo",
    "kling-v2-6",
)
"""The models the talking-photo endpoint takes (AceDataCloud's own server and web app list these)."""
TalkingPhotoModel = Literal[TALKING_PHOTO_MODELS]  # type: ignore[valid-type]


class MotionInput(GenerationRequest):
    endpoint = "/kling/motion"

    image_url: ImageSource = Field(description="The character to animate: a clear, full-body image.")
    video_url: VideoSource = Field(description="The reference video whose movements the character copies.")
    character_orientation: Literal["image", "video"] = Field(
        "image", description="Whose facing the result keeps: 'image' the picture's, 'video' the reference's."
    )
    mode: StdOrPro = "std"
    prompt: OptionalPrompt = Field(None, description="Scene details: background, lighting, style.")
    keep_original_sound: Literal["yes", "no"] | None = Field(
        None, description="'yes' keeps the reference video's sound; left out, the API decides."
    )
    model_name: Identifier | None = Field(None, description="A motion model id; left out, the API's own.")


GENERATE_MOTION = f"""Make the character in an image move like the person in a reference video \
(motion transfer).

Use it for real choreography, gestures or a dance from a video; for motion in words use \
kling_generate_video_from_image.

{paid("mode and the reference video's length")}"""


VOICE_SETTINGS = ("voice_id", "voice_language", "voice_speed")
"""What only speech from text takes: the voice that speaks it."""


class LipSyncInput(GenerationRequest):
    endpoint = "/kling/lip-sync"

    video_id: Identifier | None = Field(None, description="video_id of a Kling result to re-voice.")
    video_url: VideoSource | None = Field(None, description="Or any video with a clearly visible face.")
    audio_url: AudioSource | None = Field(None, description="The speech to sync to (MP3/WAV/M4A/AAC).")
    text: Annotated[str, Text(SPEECH_TEXT_LIMIT)] | None = Field(
        None, description="Or words for a Kling voice to speak."
    )
    voice_id: Identifier | None = Field(None, description="With text: the Kling voice that speaks it.")
    voice_language: Literal["zh", "en"] = Field("en", description="With text: its language.")
    voice_speed: float = Field(1.0, ge=0.8, le=2.0, description="With text: speaking speed, 1.0 normal.")

    @model_validator(mode="after")
    def _rules(self) -> LipSyncInput:
        problems = []
        if (self.video_id is None) == (self.video_url is None):
            problems.append("video_id / video_url: give exactly one of them.")
        if (self.audio_url is None) == (self.text is None):
            problems.append("audio_url / text: give exactly one: audio to sync to, or text to speak.")
        if self.text is not None and not self.voice_id:
            problems.append("voice_id: required with text; pick a voice for the speech.")
        voice_settings = [name for name in VOICE_SETTINGS if name in self.model_fields_set]
        if self.audio_url is not None and voice_settings:
            problems.append(
                f"{', '.join(voice_settings)}: only with text, which a Kling voice speaks; with audio_url "
                "the audio is the voice: leave them out."
            )
        check(problems)
        return self

    def payload(self) -> dict[str, Any]:
        body = super().payload()
        if self.audio_url is None:
            return {"mode": "text2video", **body}
        # Refused above when given: here they are only the text's defaults, which audio has no use for.
        return {
            "mode": "audio2video",
            **{name: value for name, value in body.items() if name not in VOICE_SETTINGS},
        }


LIP_SYNC = f"""Re-voice a video so the lips match new speech: an audio track (audio_url), or text a \
Kling voice speaks (text, voice_id, voice_language, voice_speed).

Use it on a Kling result (video_id) or any video with a visible face (video_url), one of the two, with \
audio_url or text. For a still portrait use kling_talking_photo.

{paid("the video's length")}"""


class TalkingPhotoInput(GenerationRequest):
    endpoint = "/kling/talking-photo"

    image_url: ImageSource = Field(description="A portrait with a clearly visible face.")
    audio_url: AudioSource = Field(description="The speech it says (MP3/WAV/M4A/AAC).")
    prompt: OptionalPrompt = Field(None, description="Expression, gestures, mood.")
    model: TalkingPhotoModel = Field("kling-v2-1-master", description="The Kling model that animates it.")
    duration: Literal[5, 10] = Field(5, description="Video length in seconds; 10 costs more.")
    mode: StdOrPro = "std"


TALKING_PHOTO = f"""Make a portrait photo speak: animates the face in image_url to an audio track \
(audio_url), lips in sync.

Use it for an avatar or presenter from a single image. For a video that already exists use \
kling_lip_sync.

{paid("model, mode and duration")}"""


TOOLS = (
    paid_tool("kling_generate_motion", "Transfer motion to a character", MotionInput, GENERATE_MOTION),
    paid_tool("kling_lip_sync", "Lip-sync a video", LipSyncInput, LIP_SYNC),
    paid_tool("kling_talking_photo", "Make a photo talk", TalkingPhotoInput, TALKING_PHOTO),
)
