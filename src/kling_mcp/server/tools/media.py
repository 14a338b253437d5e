"""The tools that bring people's own media to life: motion transfer, lip-sync and talking photos."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from kling_mcp.domain.fields import AudioSource, Identifier, ImageSource, OptionalPrompt, Text, VideoSource
from kling_mcp.server.tools.common import PAID_WITH_MEDIA, GenerationRequest, check
from kling_mcp.server.tools.generation import paid_tool

StdOrPro = Annotated[Literal["std", "pro"], Field(description="'pro' is higher quality.")]
SPEECH_TEXT_LIMIT = 1000


class MotionInput(GenerationRequest):
    endpoint = "/kling/motion"

    image_url: ImageSource = Field(description="The character to animate; a clear full-body image.")
    video_url: VideoSource = Field(description="The reference video whose movement it copies.")
    character_orientation: Literal["image", "video"] = Field(
        "image", description="Which one sets the facing."
    )
    mode: StdOrPro = "std"
    prompt: OptionalPrompt = Field(None, description="Details about the scene.")
    keep_original_sound: Literal["yes", "no"] | None = Field(None, description="Keep the video's sound.")
    model_name: Identifier | None = Field(None, description="Leave out for the API's motion model.")


GENERATE_MOTION = f"""Make the character in an image move like the person in a reference video \
(motion transfer).

Use it to give a specific character real choreography, gestures or a dance taken from a video; for \
motion described in words use kling_generate_video_from_image instead.

{PAID_WITH_MEDIA}"""


class LipSyncInput(GenerationRequest):
    endpoint = "/kling/lip-sync"

    video_id: Identifier | None = Field(None, description="video_id of a Kling result to re-voice.")
    video_url: VideoSource | None = Field(None, description="Or any video with a visible face.")
    audio_url: AudioSource | None = Field(None, description="Speech to sync to (MP3/WAV/M4A/AAC).")
    text: Annotated[str, Text(SPEECH_TEXT_LIMIT)] | None = Field(None, description="Or text to speak.")
    voice_id: Identifier | None = Field(None, description="The Kling voice that speaks text.")
    voice_language: Literal["zh", "en"] = "en"
    voice_speed: float = Field(1.0, ge=0.8, le=2.0)

    @model_validator(mode="after")
    def _rules(self) -> LipSyncInput:
        problems = []
        if (self.video_id is None) == (self.video_url is None):
            problems.append("video_id / video_url: give exactly one of them.")
        if (self.audio_url is None) == (self.text is None):
            problems.append("audio_url / text: give exactly one: audio to sync to, or text to speak.")
        if self.text is not None and not self.voice_id:
            problems.append("voice_id: required with text; pick a voice for the speech.")
        check(problems)
        return self

    def payload(self) -> dict[str, Any]:
        body = super().payload()
        if self.audio_url is not None:
            for name in ("text", "voice_id", "voice_language", "voice_speed"):
                body.pop(name, None)
            return {"mode": "audio2video", **body}
        return {"mode": "text2video", **body}


LIP_SYNC = f"""Re-voice a video so the face's lips match new speech: an audio track (audio_url), or \
text spoken by a Kling voice (text + voice_id, in voice_language at voice_speed).

Use it on a Kling result (video_id) or any video with a clearly visible face (video_url): exactly one \
of the two, and exactly one of audio_url or text. To make a still portrait speak use \
kling_talking_photo.

{PAID_WITH_MEDIA}"""


class TalkingPhotoInput(GenerationRequest):
    endpoint = "/kling/talking-photo"

    image_url: ImageSource = Field(description="A portrait with a clearly visible face.")
    audio_url: AudioSource = Field(description="The speech it says (MP3/WAV/M4A/AAC).")
    prompt: OptionalPrompt = Field(None, description="Expression, gestures, mood.")
    model: Identifier | None = Field(None, description="Leave out for the API's default.")
    duration: Literal[5, 10] = Field(5, description="Seconds.")
    mode: StdOrPro = "std"


TALKING_PHOTO = f"""Make a portrait photo speak: animates the face in image_url to an audio track \
(audio_url), lips in sync.

Use it for an avatar or presenter from a single image. For a video that already exists use \
kling_lip_sync.

{PAID_WITH_MEDIA}"""


TOOLS = (
    paid_tool("kling_generate_motion", "Transfer motion to a character", MotionInput, GENERATE_MOTION),
    paid_tool("kling_lip_sync", "Lip-sync a video", LipSyncInput, LIP_SYNC),
    paid_tool("kling_talking_photo", "Make a photo talk", TalkingPhotoInput, TALKING_PHOTO),
)
