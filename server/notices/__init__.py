"""The printed seal notice (查封公告): a PDF with a QR code whose token the court signs, and the public page that
token leads to (:mod:`server.notices.token` is the token's format, ``docs/notice.md`` its description)."""
