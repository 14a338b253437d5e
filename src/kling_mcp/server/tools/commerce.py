"""The commerce tools: a product studio video, and a presenter selling a product.

Their parameters are flat; on the wire they become the API's `contents` list (typed items) and
`settings` object, built in `payload()`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from kling_mcp.domain.fields import Identifier, ImageSource, JsonText, Text
from kling_mcp.server.tools.common import GenerationRequest, check, paid
from kling_mcp.server.tools.generation import paid_tool

MAX_PRODUCT_IMAGES = 9
MAX_SELLING_POINTS = 5
SPEECH_RATES = (0.8, 1.0, 1.2)
Resolution = Annotated[Literal["720p", "1080p"], Field(description="Resolution; 1080p costs more.")]
ShortText = Annotated[str, Text(200)]
Watermark = Annotated[bool, Field(description="true: the API adds its watermark.")]


def _text(kind: str, text: str | None) -> list[dict[str, str]]:
    return [{"type": kind, "text": text}] if text else []


def _images(kind: str, urls: list[str] | None) -> list[dict[str, str]]:
    return [{"type": kind, "url": url} for url in urls or []]


class GoodsStudioInput(GenerationRequest):
    endpoint = "/kling/goods-studio"

    product_images: JsonText[list[ImageSource]] = Field(
        min_length=1, max_length=MAX_PRODUCT_IMAGES, description="Photos of the product to show."
    )
    title: ShortText | None = Field(None, description="The product's name, shown in the video.")
    description: Annotated[str, Text(1000)] | None = Field(None, description="What it is, for the copy.")
    price: Annotated[str, Text(50)] | None = Field(None, description='The price as shown, e.g. "$29.99".')
    selling_points: JsonText[list[ShortText]] | None = Field(
        None, max_length=MAX_SELLING_POINTS, description="Short selling points, each shown."
    )
    resolution: Resolution = "1080p"
    aspect_ratio: Literal["9:16", "1:1", "16:9"] = Field(
        "9:16", description="9:16 portrait, 1:1 square, 16:9 landscape."
    )
    duration: Literal[15, 30, 60] = Field(15, description="Video length in seconds; longer costs more.")
    watermark: Watermark = False

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


GOODS_STUDIO = f"""Make a product showcase video (a studio ad) from product photos and optional \
title, description, price and selling points.

Use it for shop listings and social ads without speech; for a presenter or voice-over use \
kling_video_commerce.

{paid("resolution and duration")}"""


class VideoCommerceInput(GenerationRequest):
    endpoint = "/kling/video-commerce"

    speech_script: Annotated[str, Text(2000)] = Field(description="What is said, word for word.")
    avatar_image: ImageSource | None = Field(None, description="A photo of the presenter who says it.")
    avatar_id: Identifier | None = Field(None, description="Or a saved avatar's id.")
    product_images: JsonText[list[ImageSource]] | None = Field(
        None, max_length=MAX_PRODUCT_IMAGES, description="Photos of the product to show."
    )
    voice_id: Identifier | None = Field(None, description="The Kling voice; left out, the API picks one.")
    speech_rate: float = Field(
        1.0, json_schema_extra={"enum": list(SPEECH_RATES)}, description="Speaking speed; 1.0 normal."
    )
    action_prompt: Annotated[str, Text(500)] | None = Field(None, description="The presenter's gestures.")
    allow_polish: bool = Field(False, description="true: the API may reword the script.")
    bgm_enabled: bool = Field(False, description="true: adds background music.")
    resolution: Resolution = "1080p"
    aspect_ratio: Literal["9:16", "16:9"] = Field("9:16", description="9:16 portrait or 16:9 landscape.")
    watermark: Watermark = False

    @model_validator(mode="after")
    def _rules(self) -> VideoCommerceInput:
        problems = []
        if self.avatar_image is not None and self.avatar_id is not None:
            problems.append("avatar_image / avatar_id: give one presenter, a photo or a saved avatar.")
        if self.avatar_image is None and self.avatar_id is None and not self.product_images:
            problems.append(
                "product_images: required without a presenter (avatar_image or avatar_id): the voice-over "
                "needs something to show."
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


VIDEO_COMMERCE = f"""Make a product video with speech_script spoken by a presenter (avatar_image or \
a saved avatar_id), or as a voice-over on product_images when there is none.

Use it for product pitches, live-commerce clips and narrated product videos; without speech use \
kling_goods_studio; to make a portrait speak your own audio, kling_talking_photo.

{paid("resolution and the script's length")}"""


TOOLS = (
    paid_tool("kling_goods_studio", "Make a product studio video", GoodsStudioInput, GOODS_STUDIO),
    paid_tool("kling_video_commerce", "Make a product presenter video", VideoCommerceInput, VIDEO_COMMERCE),
)
