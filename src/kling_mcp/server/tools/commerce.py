"""The commerce tools: a product studio video, and a presenter selling a product.

Their parameters are flat; on the wire they become the API's `contents` list (typed items) and
`settings` object, built in `payload()`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from kling_mcp.domain.fields import Identifier, ImageSource, JsonText, Text
from kling_mcp.server.tools.common import PAID_WITH_MEDIA, GenerationRequest, check
from kling_mcp.server.tools.generation import paid_tool

MAX_PRODUCT_IMAGES = 9
MAX_SELLING_POINTS = 5
SPEECH_RATES = (0.8, 1.0, 1.2)
Resolution = Literal["720p", "1080p"]
ShortText = Annotated[str, Text(200)]


def _text(kind: str, text: str | None) -> list[dict[str, str]]:
    return [{"type": kind, "text": text}] if text else []


def _images(kind: str, urls: list[str] | None) -> list[dict[str, str]]:
    return [{"type": kind, "url": url} for url in urls or []]


class GoodsStudioInput(GenerationRequest):
    endpoint = "/kling/goods-studio"

    product_images: JsonText[list[ImageSource]] = Field(min_length=1, max_length=MAX_PRODUCT_IMAGES)
    title: ShortText | None = Field(None, description="The product's name.")
    description: Annotated[str, Text(1000)] | None = None
    price: Annotated[str, Text(50)] | None = Field(None, description='As shown, e.g. "$29.99".')
    selling_points: JsonText[list[ShortText]] | None = Field(None, max_length=MAX_SELLING_POINTS)
    resolution: Resolution = "1080p"
    aspect_ratio: Literal["9:16", "1:1", "16:9"] = "9:16"
    duration: Literal[15, 30, 60] = Field(15, description="Seconds.")
    watermark: bool = False

    def payload(self) -> dict[str, Any]:
        contents = [
            *_images("ref_image", self.product_images),
            *_text("goods_title", self.title),
            *_text("goods_description", self.description),
            *_text("goods_price", self.price),
            *(item for point in self.selling_points or [] for item in _text("goods_selling_point", point)),
        ]
        settings = {
            "resolution": self.resolution,
            "aspect_ratio": self.aspect_ratio,
            "duration": self.duration,
        }
        return {"contents": contents, "settings": settings, "watermark": self.watermark}


GOODS_STUDIO = f"""Make a product showcase video (a studio ad) from product photos and, optionally, \
the product's title, description, price and selling points: 15, 30 or 60 s.

Use it for shop listings and social ads without a presenter; with a presenter use kling_video_commerce.

{PAID_WITH_MEDIA}"""


class VideoCommerceInput(GenerationRequest):
    endpoint = "/kling/video-commerce"

    speech_script: Annotated[str, Text(2000)] = Field(description="What the presenter says.")
    avatar_image: ImageSource | None = Field(None, description="A photo of the presenter.")
    avatar_id: Identifier | None = Field(None, description="Or a saved avatar's id.")
    product_images: JsonText[list[ImageSource]] | None = Field(None, max_length=MAX_PRODUCT_IMAGES)
    voice_id: Identifier | None = Field(None, description="A Kling voice; the API picks one if left out.")
    speech_rate: float = Field(1.0, json_schema_extra={"enum": list(SPEECH_RATES)})
    action_prompt: Annotated[str, Text(500)] | None = Field(None, description="Gestures and actions.")
    allow_polish: bool = Field(False, description="Let the API polish the script.")
    bgm_enabled: bool = Field(False, description="Add background music.")
    resolution: Resolution = "1080p"
    aspect_ratio: Literal["9:16", "16:9"] = "9:16"
    watermark: bool = False

    @model_validator(mode="after")
    def _rules(self) -> VideoCommerceInput:
        problems = []
        if (self.avatar_image is None) == (self.avatar_id is None):
            problems.append(
                "avatar_image / avatar_id: give exactly one: a presenter photo, or a saved avatar."
            )
        if self.speech_rate not in SPEECH_RATES:
            problems.append("speech_rate: use 0.8, 1.0 or 1.2.")
        check(problems)
        return self

    def payload(self) -> dict[str, Any]:
        contents = [
            *_images("avatar_image", [self.avatar_image] if self.avatar_image else None),
            *_text("avatar_id", self.avatar_id),
            *_text("speech_script", self.speech_script),
            *_images("product_image", self.product_images),
        ]
        settings = self.model_dump(
            mode="json",
            exclude_none=True,
            include={"resolution", "aspect_ratio", "allow_polish", "bgm_enabled", "voice_id"}
            | {"speech_rate", "action_prompt"},
        )
        return {"contents": contents, "settings": settings, "watermark": self.watermark}


VIDEO_COMMERCE = f"""Make a presenter video that sells a product: a person (avatar_image, or a saved \
avatar_id) speaks speech_script, with the product images shown.

Use it for talking-head product pitches and live-commerce clips; without a presenter use \
kling_goods_studio. To make any portrait speak your own audio use kling_talking_photo.

{PAID_WITH_MEDIA}"""


TOOLS = (
    paid_tool("kling_goods_studio", "Make a product studio video", GoodsStudioInput, GOODS_STUDIO),
    paid_tool("kling_video_commerce", "Make a product presenter video", VideoCommerceInput, VIDEO_COMMERCE),
)
