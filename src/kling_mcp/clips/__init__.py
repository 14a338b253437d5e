"""Local work on saved videos: a contact sheet of a clip, one of its frames, clips joined into one.

Decoding and encoding are PyAV's (FFmpeg inside its wheels, so no system package is needed),
imported only when a clip is worked on: start-up and `tools/list` never load FFmpeg. Every
function here blocks (run it in a thread), writes each file under a hidden temporary name that is
renamed at the end, so a failure leaves nothing half-written, and raises ClipError, whose message
says which file and why.
"""

from kling_mcp.clips.frames import BeyondTheEnd, FramePosition, extract_frame, frame_path, frame_preview
from kling_mcp.clips.join import JoinedVideo, copyable, join_videos
from kling_mcp.clips.sheet import SHEET_FRAMES, contact_sheet, sheet_path
from kling_mcp.clips.video import ClipError, is_fresh, probe

__all__ = [
    "SHEET_FRAMES",
    "BeyondTheEnd",
    "ClipError",
    "FramePosition",
    "JoinedVideo",
    "contact_sheet",
    "copyable",
    "extract_frame",
    "frame_path",
    "frame_preview",
    "is_fresh",
    "join_videos",
    "probe",
    "sheet_path",
]
