"""A stored object (a snapshot, a proof file) sent to a client that may see it: streamed through the court server
from whichever store holds it, never a link to the store itself (the access checks stay the server's)."""

from __future__ import annotations

from urllib.parse import quote

from fastapi.responses import StreamingResponse

from server.core.blobs import Blob


def stored_response(
    blob: Blob, *, media_type: str, headers: dict[str, str], attachment: str | None = None
) -> StreamingResponse:
    """``blob`` as the response's body, with its length; ``attachment``: a download under that file name (the
    Content-Disposition Starlette's FileResponse gives)."""
    headers = {**headers, "Content-Length": str(blob.size)}
    if attachment is not None:
        quoted = quote(attachment)
        headers["Content-Disposition"] = (
            f"attachment; filename*=utf-8''{quoted}" if quoted != attachment else f'attachment; filename="{attachment}"'
        )
    return StreamingResponse(blob.chunks, media_type=media_type, headers=headers)
