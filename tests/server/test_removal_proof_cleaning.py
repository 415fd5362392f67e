"""Whatever a stored proof picture's bytes, a party's download is the copy without its metadata or a clear refusal,
never a 500; a picture that cannot be so copied is refused at upload (then it is never stored). The samples are the
review's fuzz finds (fuzz_proofs.py): a JPEG whose EXIF is no TIFF (Pillow's EXIF reader raised SyntaxError) and one
whose rational tag holds a string (TypeError)."""

from __future__ import annotations

import base64
import hashlib
import io
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select

from server.app import create_app
from server.core.db import SessionFactory
from server.removal.errors import ProofRefused
from server.removal.models import RemovalProof
from server.removal.proof_metadata import Uncleanable, without_metadata
from server.removal.proofs import ProofStore, check_proof
from tests.server.auth_helpers import make_settings
from tests.server.removal_world import RemovalWorld, make_world, picture_bytes, proof

SAMPLES = {
    "SyntaxError": (
        "/9j/4AAQSkZJRgABKwEAAAEAAQAA/+EAZEV4aWYAAAAAACoAAAAIAAIBEgADAAAAAQAGAACIJQAEAAAAAQAAACYAAAAAAAIAAQAC"
        "AAAAAk4AAAAAAgAFAAAAAwAAAEQAAAAAAAAAHwAAAAEAAAAdAAAAAQAAAAwAAAAB//4ABGhp/9sAQwAIBgYHBgUIBwcHCQkICgwU"
        "DQwLCwwZEhMPFB0aHx4dGhwcICQuJyAiLCMcHCg3KSwwMTQ0NB8nOT04MjwuMzQy/9sAQwEJCQkMCwwYDQ3OMiEcITIyMjIyMjIy"
        "MjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIy/8AAEQgAEAAYAwEiAAIRAQMRAf/EAB8AAAEFAQEBAQEB"
        "AAAAAAAAAAABAgMEBQYHCAkKC//EALUQAAIBAwMCBAMFBQQEAAABfQECAwAEEQUSITFBBhNRYQcicRQygZGhCCNCscEVUtHwJDNi"
        "coIJChYXGBkaJSYnKCkqNDU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6g4SFhoeIiYqSk5SVlpeYmZqio7m6"
        "wsPExcbHyMnK0tPU1dbX2Nna4eLj5OXm5+jp6vHy8/T19vf4+fr/xAAfAQADAQEBAQEBAQEBAAAAAAAAAQIDBAUGBwgJCgv/xAC1"
        "EQACAQIEBAMEBwUEBAABAncAAQIDEQQFITEGEkFRB2FxEyIygQgUQpGhscEJIzNS8BVictEKFiQ04SXxFxgZGiYnKCkqNTY3ODk6"
        "Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqCg4SFhoeIiYqSk5SVlpeYmZqio6Slpqeoqaqys7S1tre4ubrCw8TFxsfI"
        "ycrS09TV1tfY2dri4+Tl5ufo6ery8/T19vf4+fr/2gAMAwEAAhEDEQA/AN/xJ4omgZzvNcH/AMJ8/wBr8vzDnPTNd34k8MTTs42m"
        "uD/4QF/tfmeWc564oA7vw34omnZDvNFHhvwvNAyDYaKAP//Z"
    ),
    "TypeError": (
        "/9j/4AAQSkZJRgABAQAAAQABAAD/4QBkRXhpZgAATU0AKgAAAAgAAgESAAMAAAABAAYAAIglAAQAAAABAAAAJgAAAAAAAgAHAAIA"
        "AAACTgAAAAACAAUAAAADAAAARAAAAAAAAAAfAAAAAQAAAB0AAAABAAAADAD//gAEaGn/2wBDAAgGBgcGBQgHBwcJCS4KDBQNDAsL"
        "DBkSEw8UHRofHh0aHBwgJC4nICIsIxwcKDcpLDAxNDQ0Hyc5PTgyPC4zNDL/2wBDAQkJCQwLDBgjZQzEeFeVDQ0YMiEcITIyMjIy"
        "MjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyNTIyMjIyMjIy/8AAEQgAEAAYAwEiAAIRAQMRAf/EAB8AAAEFAQEB"
        "AQEBAAAAAAAAAAABAgMEBQYHCAkKC//EALUQAAIBAwMCBAMFBQQEAAABfQECAwAEEQUSITFBBhNRYQcicRQygZGhCCOdscEVUtHw"
        "JDNicoIJChYXGBkaJSYnKCkqNDU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6g4SFhoeIiYqSk5SVlpeYmZqi"
        "o6Slpqeoqaqys7S1tre4ubrCw8TFxsfIycrS09TV1tfY2drh4uPk5ebn6Onq8fLz9PX29/j5+v/EAB8BAAMBAQEBAQEBAQEAAAAA"
        "AAABAgMEBQYHCAkKC//EALURAAIBAgQEAwQHBQQEAAECdwABAgMRBAUhMQYSQVEHYXETIjKBCBRCkaGxwQkjM1LwFWJy0QoWJDTh"
        "JfEXGBkaJicoKSo1Njc4OTpDREVGR0hJSlNUVVZXWFlaY2RlZmdoaWpzdHV2d3h5eoKDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ip"
        "qrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uLj5OXm5+jp6vLz9PX29/j5+v/aAAwDAQACEQMRAD8A3/EniiaBnO81wf8Awnz/"
        "AGvy/MOc9M13fiTwxNOzjaa4P/hAX+1+Z5ZznrigDu/DfiiadkO80UeG/C80DINhooA//9k="
    ),
}


def sample(name: str) -> bytes:
    return base64.b64decode(SAMPLES[name])


def broken_exif_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 10, 10)).save(out, "JPEG", exif=exif)
    data = out.getvalue()
    at = data.index(b"Exif\x00\x00") + 6
    return data[:at] + b"\x00\x00\x00*" + data[at + 4 :]  # the TIFF byte order mark destroyed


@pytest.fixture
def world(database_url: str, session_factory: SessionFactory, tmp_path: Path) -> Iterator[RemovalWorld]:
    settings = make_settings(database_url, tmp_path)
    with TestClient(create_app(settings, with_ingest=False), raise_server_exceptions=False) as client:
        yield make_world(session_factory, tmp_path, client)


def url(request_id: int, data: bytes) -> str:
    return f"/api/removal-requests/{request_id}/proofs/{hashlib.sha256(data).hexdigest()}"


@pytest.mark.parametrize("name", ["SyntaxError", "TypeError", "made"])
def test_a_jpeg_with_a_broken_exif_is_served_to_the_parties_without_it(world: RemovalWorld, name: str) -> None:
    """Old code: 500 to the creditor and the debtor."""
    data = broken_exif_jpeg() if name == "made" else sample(name)
    request_id = world.filed(files=[proof("回单.jpg", data, "image/jpeg")])
    assert world.client.get(url(request_id, data), headers=world.as_("judge")).content == data
    for who in ("creditor", "debtor"):
        got = world.client.get(url(request_id, data), headers=world.as_(who))
        assert got.status_code == 200, got.text
        assert b"Exif" not in got.content
        with Image.open(io.BytesIO(got.content)) as picture:
            picture.load()


def test_a_stored_picture_that_cannot_be_copied_is_refused_clearly(
    world: RemovalWorld, database_url: str, tmp_path: Path
) -> None:
    """A picture in the store that neither the walk nor Pillow can copy (one stored before today's upload check, or
    by another server): the parties get a clear 409 in both languages, never a 500; the upload refuses such bytes."""
    good = picture_bytes("JPEG")
    request_id = world.filed(files=[proof("回单.jpg", good, "image/jpeg")])
    uncopyable = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 4  # a JPEG's start, then no picture
    ProofStore(make_settings(database_url, tmp_path).proof_dir).put(
        hashlib.sha256(uncopyable).hexdigest(), uncopyable, ".jpg"
    )
    with world.session_factory.begin() as session:
        stored = session.scalars(select(RemovalProof).where(RemovalProof.request_id == request_id)).one()
        stored.sha256, stored.size = hashlib.sha256(uncopyable).hexdigest(), len(uncopyable)
    got = world.client.get(url(request_id, uncopyable), headers=world.as_("creditor"))
    assert got.status_code == 409, got.text
    detail = got.json()["detail"]
    assert "请向法院索取" in detail and "ask the court for it" in detail, detail
    assert detail.index("请向") < detail.index("ask the court")
    assert (
        world.client.get(url(request_id, uncopyable) + "?original=true", headers=world.as_("judge")).content
        == uncopyable
    )
    with pytest.raises(ProofRefused):  # and at upload, it is refused
        check_proof(uncopyable, filename="回单.jpg", declared_type="image/jpeg", max_bytes=1 << 20)


def test_what_the_check_accepts_the_cleaner_copies_or_says_uncleanable() -> None:
    """A small mutation fuzz over the samples: check_proof raises only ProofRefused, and without_metadata of what it
    accepted gives a copy (Uncleanable only, never another error)."""
    rng = random.Random(7)
    seeds = [sample("SyntaxError"), sample("TypeError"), broken_exif_jpeg()]
    for _ in range(400):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(data))
            data[at] = rng.randrange(256)
        try:
            checked = check_proof(bytes(data), filename="f", declared_type="", max_bytes=1 << 20)
        except ProofRefused:
            continue
        try:
            without_metadata(bytes(data), checked.media_type)
        except Uncleanable:
            pass
