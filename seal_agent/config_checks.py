"""What a running seal needs from the machine, beyond a valid file: the files its configuration names (readable, a CA
the TLS layer loads, playable sounds), the modes of its secrets, and, for the installed seal, the systemd unit's
sandbox.

:func:`check_files` is checked by ``check-config`` and at every start (a problem stops both). The rest are warnings:
:func:`secret_warnings` (a device key or MQTT password other accounts can read) at both, :func:`unit_warnings`
(what ``hardware/seal-agent.service`` would not let the service reach) and :func:`root_warning` by ``check-config``
only. ``check-config`` is meant to run as the service's user (``sudo -u seal …``): root reads every file and writes
every directory, so a check run as root says nothing of what the service can do.
"""

from __future__ import annotations

import os
import pwd
import ssl
import stat
from pathlib import Path, PurePath

from seal_agent.config import NO_COURT_KEY, AgentConfig, read_password
from seal_agent.devices.wav_format import unplayable
from seal_agent.errors import ConfigError
from seal_protocol.case_numbers import EXPECTED_FORM, read_case_no

#: The user the unit runs the agent as (``User=``).
SERVICE_USER = "seal"
#: What hardware/seal-agent.service runs and lets the agent reach (tests/agent/test_config_checks.py holds these
#: to the unit): the file of its ``ExecStart=``, its ``WorkingDirectory=``, the one directory it may write
#: (``ReadWritePaths=``, ``StateDirectory=``; ``ProtectSystem=strict`` makes everything else read-only) and the trees
#: it does not see (``ProtectHome=yes``: /home, /root, /run/user; ``PrivateTmp=yes``: a /tmp and /var/tmp of its own).
UNIT_CONFIG = Path("/etc/court-seal/agent.toml")
UNIT_WORKING_DIRECTORY = Path("/var/lib/court-seal")
UNIT_WRITABLE = Path("/var/lib/court-seal")
UNIT_HIDDEN = (Path("/home"), Path("/root"), Path("/run/user"), Path("/tmp"), Path("/var/tmp"))


def check_files(config: AgentConfig) -> list[str]:
    """Problems with the configuration as a running seal needs it (the files it points at, the court key), checked
    by ``check-config`` and at start."""
    problems = [] if config.commands.verify_key() is not None else [NO_COURT_KEY]
    try:
        read_password(config)
    except ConfigError as exc:
        problems.extend(exc.problems)
    if config.mqtt.tls_ca_file is not None and (problem := ca_problem(config.mqtt.tls_ca_file)) is not None:
        problems.append(problem)
    if config.tamper.enabled and config.tamper.pin == config.pir.pin:
        problems.append(f"tamper.pin: GPIO{config.tamper.pin} is already the PIR's pin")
    for index, path in enumerate(config.warning.sound_files()):
        if not path.is_file():
            problems.append(f"warning.languages.{index}: {path} does not exist")
        elif (problem := unplayable(path)) is not None:
            problems.append(f"warning.languages.{index}: {problem}")
    state_dir = config.state_dir
    if state_dir.exists() and not state_dir.is_dir():
        problems.append(f"state_dir: {state_dir} is not a directory")
    elif state_dir.exists() and not os.access(state_dir, os.W_OK | os.X_OK):
        problems.append(f"state_dir: {state_dir} is not writable")
    return problems


def ca_problem(path: Path) -> str | None:
    """Why the broker's CA certificate at ``path`` cannot be used, loaded as the agent's MQTT client loads it (a TLS
    context with it as ``cafile``), or None. A file that is not PEM (a DER file, a key, a truncated copy) would
    otherwise pass and stop the seal at every start with OpenSSL's ``[X509] PEM lib``."""
    try:
        context = ssl.create_default_context(cafile=str(path))
    except ssl.SSLError as exc:
        return (
            f"mqtt.tls_ca_file: {path} 不是可用的 PEM 格式 CA 证书（应为法院给出的 ca.crt 副本，以 -----BEGIN "
            f"CERTIFICATE----- 开头）/ {path} holds no CA certificate the seal can load: it must be the court's CA "
            f"in PEM form (a copy of its ca.crt, starting -----BEGIN CERTIFICATE-----); OpenSSL says: {exc}"
        )
    except OSError as exc:
        return f"mqtt.tls_ca_file: 无法读取 {path} / cannot read {path}: {exc.strerror or exc}"
    if context.cert_store_stats()["x509"] == 0:
        return f"mqtt.tls_ca_file: {path} 中没有证书 / {path} holds no certificate (only revocation lists)"
    return None


def check_camera(config: AgentConfig) -> list[str]:
    """Problems with a configured video *file* (``[camera] source`` a path outside ``/dev``): it must exist and be a
    file. A camera *device* that is missing is a warning (:func:`camera_warnings`), not a problem.

    Reported by ``check-config`` only. A running seal never refuses to start for its camera: without it the seal
    still warns and records, and it keeps looking for the device (a replugged USB camera comes back).
    """
    source = config.camera.source
    if not source or source.isdigit() or source.startswith("/dev/"):
        return []
    path = Path(source)
    if not path.exists():
        return [f"camera.source: {path} does not exist"]
    if not path.is_file():
        return [f"camera.source: {path} is not a video file"]
    return []


def camera_warnings(config: AgentConfig) -> list[str]:
    """A camera device that is not there now: a device index ``N`` names ``/dev/videoN``, a ``/dev`` path that device.
    A warning, as the seal treats it (it starts, warns and records without pictures, and keeps looking for the device),
    so that ``check-config`` does not fail an installation whose USB camera is unplugged for the moment."""
    source = config.camera.source
    if not source or not (source.isdigit() or source.startswith("/dev/")):
        return []
    device = Path(f"/dev/video{int(source)}") if source.isdigit() else Path(source)
    if device.exists():
        return []
    which = f"{device} (camera {source})" if source.isdigit() else str(device)
    return [
        f"camera.source: 摄像头 {which} 现在不存在；封条照常警告和记录，只是没有照片，并会一直寻找该设备（插上即用）"
        f" / camera.source: {which} does not exist: the seal warns and records without pictures until it appears"
    ]


#: The values hardware/agent.example.toml gives the keys it marks ``# CHANGE`` that a valid configuration may keep by
#: mistake (tests/agent/test_config_checks.py holds them to the file).
EXAMPLE_VALUES = {"device_id": "seal-0001", "case_no": "(2021)苏0214执1234号"}


def example_warnings(config: AgentConfig) -> list[str]:
    """``device_id`` or ``case_no`` left at the example's value (marked ``# CHANGE`` there): the seal would speak
    for another seal, or in another case, than the court registered; ``[mqtt] host`` left at it (a domain that never
    resolves: :func:`reserved_host`)."""
    values = {"device_id": config.device_id, "case_no": config.case_no}
    return [
        f"{key}: “{value}”是示例配置 agent.example.toml 中的值（标有 # CHANGE），请改为法院为本封条登记的"
        f"{'编号' if key == 'device_id' else '案号'} / {key}: {value!r} is the example configuration's value (marked "
        f"# CHANGE): set the {'id' if key == 'device_id' else 'case number'} the court registered for this seal"
        for key, value in values.items()
        if value == EXAMPLE_VALUES[key]
    ] + ([] if (host := reserved_host(config.mqtt.host)) is None else [host])


#: Top-level domains reserved never to resolve (RFC 2606, RFC 6761): the example's ``mqtt.court.example`` is one.
NEVER_RESOLVED = (".example", ".invalid")


def reserved_host(host: str) -> str | None:
    """``[mqtt] host`` in a domain that never resolves (the example's value, marked ``# CHANGE``): a seal that would
    never reach its broker. A warning, as the example's other values: the file is valid."""
    if not host.lower().rstrip(".").endswith(NEVER_RESOLVED):
        return None
    return (
        f"mqtt.host: “{host}”是保留域名（如示例配置的 mqtt.court.example），永远无法解析，封条将连不上法院的服务器；"
        f"请改为法院 MQTT 服务器的主机名或 IP 地址 / mqtt.host: {host!r} is in a reserved domain (as the example "
        "configuration's mqtt.court.example) that never resolves: the seal would never reach the court's broker; set "
        "the host name or IP address of the court's broker"
    )


def case_no_warning(config: AgentConfig) -> str | None:
    """A case number not in the form of today's enforcement case numbers. Not refused: the court keeps cases of older
    forms (``(2015)锡执字第00123号``, a number with ``之一``), and a seal of one must guard. But a typo (parentheses or
    号 left out) has every event refused at the court as ``wrong_case`` (the court then raises ``case_mismatch``)."""
    if read_case_no(config.case_no) is not None:
        return None
    form_zh, _, form_en = EXPECTED_FORM.partition(" / ")
    return (
        f"case_no: “{config.case_no}”不是现行格式的执行案号，请核对与法院登记的案号完全一致（旧格式案号可忽略本提示）。"
        f"{form_zh} / {config.case_no!r} is not an enforcement case number of today's form: check that it is exactly "
        f"the number the court registered (an older form's number may ignore this). {form_en}"
    )


def secret_warnings(config: AgentConfig) -> list[str]:
    """Secrets other accounts can read: the device key (signs the seal's evidence) if its group or others can read
    it, the MQTT password if others can (the installation gives it 0640 root:seal, for the service's group)."""
    warnings = []
    key = config.key_path
    if (mode := _mode(key)) is not None and mode & 0o044:
        warnings.append(
            f"state_dir: 设备私钥 {key} 可被其他账号读取（权限 {mode:04o}），读到它的人能以本封条的名义签署事件，"
            f"请执行 chmod 600 {key} / the device key {key} is readable by other accounts (mode {mode:04o}): whoever "
            f"reads it can sign events as this seal; chmod 600 {key}"
        )
    password = config.mqtt.password_file
    if (mode := _mode(password)) is not None and mode & 0o004:
        warnings.append(
            f"mqtt.password_file: MQTT 密码文件 {password} 任何账号都能读取（权限 {mode:04o}），"
            f"请执行 chown root:{SERVICE_USER} {password} && chmod 640 {password} / the MQTT password file "
            f"{password} is readable by every account (mode {mode:04o}); chown root:{SERVICE_USER} {password} && "
            f"chmod 640 {password}"
        )
    return warnings


def _mode(path: Path) -> int | None:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None


def unit_warnings(config: AgentConfig) -> list[str]:
    """What the systemd unit's sandbox would keep from the service, for the file it runs (:data:`UNIT_CONFIG`): a
    relative path (the unit resolves it from :data:`UNIT_WORKING_DIRECTORY`), a file or directory in a tree it does
    not see (:data:`UNIT_HIDDEN`, a symbolic link into one too), a ``state_dir`` it may not write."""
    paths: dict[str, Path] = {
        "state_dir": config.state_dir,
        "mqtt.password_file": config.mqtt.password_file,
        "warning.sounds_dir": config.warning.sounds_path,
    }
    if config.mqtt.tls_ca_file is not None:
        paths["mqtt.tls_ca_file"] = config.mqtt.tls_ca_file
    source = config.camera.source
    if source and not source.isdigit() and not source.startswith("/dev/"):
        paths["camera.source"] = Path(source)
    warnings = []
    for key, path in paths.items():
        if not path.is_absolute():
            warnings.append(
                f"{key}: 相对路径 {path} 由服务从其工作目录 {UNIT_WORKING_DIRECTORY} 解析，而不是从当前目录，"
                f"请写绝对路径 / relative path {path}: the seal-agent unit resolves it from its working directory "
                f"{UNIT_WORKING_DIRECTORY}, not from here; write it absolute"
            )
        seen = (UNIT_WORKING_DIRECTORY / path).resolve()
        hidden = next((root for root in UNIT_HIDDEN if _within(seen, root)), None)
        if hidden is not None:
            warnings.append(
                f"{key}: {seen} 位于 {hidden} 之下，seal-agent 服务看不到该目录（ProtectHome=yes、PrivateTmp=yes），"
                f"请移到 /etc/court-seal 等处 / {seen} is under {hidden}, which the seal-agent unit does not see "
                "(ProtectHome=yes, PrivateTmp=yes): move it, e.g. to /etc/court-seal"
            )
        elif key == "state_dir" and not _within(seen, UNIT_WRITABLE):
            warnings.append(
                f"state_dir: {seen} 不在 {UNIT_WRITABLE} 之内，seal-agent 服务只能写该目录（ProtectSystem=strict），"
                f"请改为 {UNIT_WRITABLE} / {seen} is outside {UNIT_WRITABLE}, the only directory the seal-agent unit "
                f"may write (ProtectSystem=strict, ReadWritePaths=): the service could not write there; use "
                f"{UNIT_WRITABLE}"
            )
    return warnings


def _within(path: PurePath, root: PurePath) -> bool:
    return path == root or root in path.parents


def root_warning(service_user: str = SERVICE_USER) -> str | None:
    """A warning if this process is root while the service's user exists: root reads every file and writes every
    directory, so its check says nothing of what the service can read or write."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(service_user)
    except KeyError:
        return None
    return (
        f"check-config 以 root 身份运行，root 能读写一切文件，本次检查不能说明服务账号 {service_user} 能否读取它们："
        f"请以 sudo -u {service_user} 运行 / check-config runs as root, which reads and writes everything: it cannot "
        f"tell what the service's user {service_user} can read; run it as that user (sudo -u {service_user} …)"
    )
