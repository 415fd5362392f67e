"""What the API says of input it refuses, Chinese first, as its other refusals (``中文。 / English``).

A 422's ``detail`` stays the list of the validator's errors, each with its machine-read ``loc`` and ``type`` (and
``ctx``) as FastAPI gives them; only its ``msg`` — the validator's English (``Field required``, ``Input should be
'paid_in_full', …``) — is said in Chinese first, naming the field, then in English with the field's place: a
validator of ours that says itself in Chinese already keeps its words. A body the form parser cannot read (a part
over its size, too many parts or files, a broken multipart body) is a 400 in both languages, not the parser's English.
"""

from __future__ import annotations

from typing import Any

from starlette.formparsers import MultiPartException

from server.words import said_in_chinese

#: FastAPI's 400 for a request body it could not parse (``fastapi.routing``), raised from the parser's error.
BODY_NOT_PARSED = "There was an error parsing the body"
#: How many causes of an error are looked through for the form parser's.
MAX_CAUSES = 8

#: The first part of a validation error's location: where the value was, not its name.
LOCATIONS = ("query", "path", "body", "header", "cookie")

#: The validator's error types in Chinese, ``{field}`` and the error's ``ctx`` values filled in; others: INVALID.
IN_CHINESE = {
    "missing": "缺少“{field}”。",
    "string_too_long": "“{field}”过长：最多 {max_length} 个字符。",
    "string_too_short": "“{field}”过短：至少 {min_length} 个字符。",
    "string_pattern_mismatch": "“{field}”的格式不符合要求（或含有不允许的字符）。",
    "string_type": "“{field}”应为文本。",
    "enum": "“{field}”的值不在允许的取值之中。",
    "literal_error": "“{field}”的值不在允许的取值之中。",
    "int_parsing": "“{field}”应为整数。",
    "int_type": "“{field}”应为整数。",
    "int_from_float": "“{field}”应为整数。",
    "float_parsing": "“{field}”应为数。",
    "float_type": "“{field}”应为数。",
    "bool_parsing": "“{field}”应为 true 或 false。",
    "bool_type": "“{field}”应为 true 或 false。",
    "greater_than": "“{field}”应大于 {gt}。",
    "greater_than_equal": "“{field}”应不小于 {ge}。",
    "less_than": "“{field}”应小于 {lt}。",
    "less_than_equal": "“{field}”应不大于 {le}。",
    "too_long": "“{field}”的项过多：最多 {max_length} 项。",
    "too_short": "“{field}”的项过少：至少 {min_length} 项。",
    "list_type": "“{field}”应为列表。",
    "dict_type": "“{field}”应为 JSON 对象。",
    "model_attributes_type": "“{field}”应为 JSON 对象。",
    "datetime_parsing": "“{field}”应为日期时间（ISO 8601，带时区）。",
    "datetime_from_date_parsing": "“{field}”应为日期时间（ISO 8601，带时区）。",
    "datetime_type": "“{field}”应为日期时间（ISO 8601，带时区）。",
    "timezone_aware": "“{field}”应带时区。",
    "date_parsing": "“{field}”应为日期（YYYY-MM-DD）。",
    "date_from_datetime_parsing": "“{field}”应为日期（YYYY-MM-DD）。",
    "date_type": "“{field}”应为日期（YYYY-MM-DD）。",
    "extra_forbidden": "不接受“{field}”。",
    "json_invalid": "请求体不是有效的 JSON。",
    "json_type": "请求体不是有效的 JSON。",
    "url_parsing": "“{field}”应为网址。",
    "uuid_parsing": "“{field}”应为 UUID。",
}
INVALID = "“{field}”的值无效。"
#: The 400 of a body its form parser could not read (the parser's English follows).
FORM_NOT_READ = (
    "提交的表单无法读取（某一部分过大、部分或文件过多，或格式有误），未被接收。 / the form sent cannot be read "
    "(a part too large, too many parts or files, or a broken body) and was not received"
)


def in_both_languages(error: Any) -> Any:
    """A validation error of FastAPI's (a dict) with its ``msg`` in Chinese first, then English; other fields as
    they were."""
    if not isinstance(error, dict):
        return error
    msg = str(error.get("msg", ""))
    if said_in_chinese(msg.removeprefix("Value error, ")):
        return error
    field = field_name(error.get("loc", ()))
    chinese = IN_CHINESE.get(str(error.get("type")), INVALID)
    values = {key: value for key, value in (error.get("ctx") or {}).items() if isinstance(value, int | float | str)}
    try:
        said = chinese.format(field=field, **values)
    except (KeyError, IndexError, ValueError):  # a value the words name is missing: the field is still named
        said = INVALID.format(field=field)
    return {**error, "msg": f"{said} / {field}: {msg}"}


def field_name(loc: Any) -> str:
    """The refused value's name as its location gives it (``body.seals.0.device_id`` → ``seals.0.device_id``; the
    body as a whole → ``body``)."""
    parts = [str(part) for part in (loc or ())]
    if len(parts) > 1 and parts[0] in LOCATIONS:
        parts = parts[1:]
    return ".".join(parts) or "?"


def form_not_read(parser_said: str) -> str:
    """The refusal of a form its parser could not read, with the parser's words (its limit) in the English part."""
    return f"{FORM_NOT_READ}: {parser_said[:200]}"


def form_not_parsed(exc: BaseException) -> bool:
    """Whether ``exc`` is the refusal of a body its parser could not read: Starlette's form parser's error lies
    behind it (Starlette raises its 400 while handling it), or it is FastAPI's own."""
    if str(getattr(exc, "detail", "")) == BODY_NOT_PARSED:
        return True
    cause: BaseException | None = exc
    for _ in range(MAX_CAUSES):
        if cause is None:
            return False
        if isinstance(cause, MultiPartException):
            return True
        cause = cause.__cause__ or cause.__context__
    return False
