"""The world of `make demo` (scripts/demo.py): its court, its two cases with every fact a notice prints, one account
per role, two simulated seals, and the looping clip their cameras are fed from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DemoSeal:
    device_id: str
    case_no: str
    location: str
    pin: int
    trigger_every_s: float


#: The demo's court: (code, name, telephone, address); a notice prints its telephone.
COURT = ("苏0214", "无锡市新吴区人民法院", "0510-81900000", "无锡市新吴区和风路 18 号")
#: (案号, judge, judge's phone, where, what is sealed, the ruling it rests on): every fact a notice prints, so that the
#: notices of both cases can be printed from the seal pages.
CASES = [
    (
        "(2021)苏0214执1234号",
        "张法官",
        "0510-81901234",
        "无锡市新吴区长江路 18 号 3 号仓库",
        "3 号仓库及库存设备",
        "(2021)苏0214执1234号之一",
    ),
    (
        "(2022)苏0214执567号",
        "李法官",
        "0510-81900567",
        "无锡市新吴区湘江路 6 号 201 室",
        "201 室房屋一套",
        "(2022)苏0214执567号之一",
    ),
]
#: How long the demo's seizures run from today (a notice prints the last day).
SEIZURE_DAYS = 3 * 365
#: One demo account per role: (role, username, 姓名 / name, cases). Passwords are random on every run.
ACCOUNTS = [
    ("clerk", "clerk", "陈书记员 / clerk Chen", []),
    ("judge", "judge.zhang", "张法官 / judge Zhang", [CASES[0][0], CASES[1][0]]),
    ("officer", "officer.wang", "王干警 / officer Wang", [CASES[0][0]]),
    ("creditor", "creditor.liu", "刘申请人 / creditor Liu", [CASES[0][0]]),
    ("debtor", "debtor.zhao", "赵被执行人 / debtor Zhao", [CASES[0][0]]),
]
SEALS = [
    DemoSeal("seal-demo-1", CASES[0][0], "3 号仓库东门 / warehouse 3, east door", 17, 7.0),
    DemoSeal("seal-demo-2", CASES[1][0], "201 室入户门 / flat 201, front door", 17, 11.0),
]


def write_camera_clip(path: Path, seconds: float = 12.0, fps: float = 10.0) -> Path:
    """A looping 'camera' for the simulated seals: a still, slightly noisy room that someone crosses now and then."""
    import cv2
    import numpy as np

    width, height = 320, 240
    rng = np.random.default_rng(2021)
    coarse = rng.integers(40, 210, size=(height // 16, width // 16, 3), dtype=np.uint8)
    room = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (width, height))
    if not writer.isOpened():
        raise SystemExit("demo: OpenCV cannot write an MJPG .avi here")
    frames = int(seconds * fps)
    for i in range(frames):
        frame = room.copy()
        if i % (frames // 2) < frames // 4:  # someone walks across during a quarter of each half
            x = 10 + (i * 12) % (width - 70)
            cv2.rectangle(frame, (x, 70), (x + 50, 170), (25, 25, 25), thickness=-1)
        noise = np.asarray(rng.normal(0, 2.0, size=frame.shape), dtype=np.int16)
        writer.write(np.clip(frame.astype(np.int16) + noise, 0, 255).astype(np.uint8))
    writer.release()
    return path
