"""A minimal OpenClaw gateway device client, used by tests to create real pairing requests.

The backend lists, approves and rejects device pairing requests through the OpenClaw CLI
inside the sandbox container. To test that against the real gateway we need a genuine
pending request, and the only way to get one is to behave like a new remote device: open
the gateway WebSocket from outside the container, answer the ``connect.challenge`` with a
signed ``connect`` request, and let the gateway record the unknown device as pending.

Handshake (OpenClaw gateway protocol 4, as implemented by openclaw 2026.9.x):

1. The gateway sends ``{"type": "event", "event": "connect.challenge",
   "payload": {"nonce": ..., "ts": ...}}`` right after the WebSocket opens.
2. The client sends ``{"type": "req", "id": ..., "method": "connect", "params": {...}}``
   with ``auth.token`` (the shared gateway token) and a ``device`` block: the device id is
   the SHA-256 hex digest of the raw 32-byte Ed25519 public key, the public key travels as
   unpadded base64url, and the signature (unpadded base64url) covers the "v3" payload
   ``v3|deviceId|clientId|clientMode|role|scopes,csv|signedAtMs|token|nonce|platform|family``
   where ``signedAtMs`` is the challenge's ``ts``.
3. The gateway answers with a ``res`` frame: ``ok: true`` and a ``hello-ok`` payload when
   the device is paired (or silently approved because the connection is local), otherwise
   ``ok: false`` with ``error.code == "NOT_PAIRED"`` and ``error.details.code ==
   "PAIRING_REQUIRED"`` carrying the ``requestId``, and then closes the socket with 1008.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

__all__ = [
    "DEFAULT_SCOPES",
    "DeviceIdentity",
    "PairingAttempt",
    "connect_device",
    "request_pairing",
]

#: The only protocol revision this client speaks; the gateway rejects a range it cannot serve.
PROTOCOL_VERSION = 4

#: Read-only operator access: enough to make a real pairing request, and nothing a test could
#: misuse if the request is approved.
DEFAULT_SCOPES: tuple[str, ...] = ("operator.read",)

Outcome = Literal["pairing-required", "connected", "rejected", "closed"]


def _b64url(data: bytes) -> str:
    # The gateway accepts canonical unpadded base64url for keys and signatures.
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _normalize_metadata(value: str | None) -> str:
    # Mirrors the gateway: platform/deviceFamily are trimmed and ASCII-lowercased before they
    # enter the signed payload, so "Linux" and "linux" sign identically.
    if not value:
        return ""
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in value.strip())


@dataclass(frozen=True, eq=False)
class DeviceIdentity:
    """An Ed25519 device identity in the shape the OpenClaw gateway expects."""

    private_key: Ed25519PrivateKey
    public_key_raw: bytes
    device_id: str

    @classmethod
    def generate(cls) -> DeviceIdentity:
        """Create a fresh identity; every call is a device the gateway has never seen."""
        private_key = Ed25519PrivateKey.generate()
        raw = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        # The gateway derives the device id from the key and rejects a mismatch, so the id
        # must be exactly sha256(raw public key) in lowercase hex.
        return cls(private_key=private_key, public_key_raw=raw, device_id=hashlib.sha256(raw).hexdigest())

    @property
    def public_key(self) -> str:
        """The public key as sent on the wire (raw 32 bytes, unpadded base64url)."""
        return _b64url(self.public_key_raw)

    def sign(self, payload: str) -> str:
        """Sign a UTF-8 payload and return the unpadded base64url signature."""
        return _b64url(self.private_key.sign(payload.encode("utf-8")))


@dataclass(frozen=True)
class PairingAttempt:
    """What one connect attempt taught us about the gateway's view of a device.

    ``outcome`` is ``"pairing-required"`` when the gateway recorded (or refreshed) a pending
    request, ``"connected"`` when it accepted the device (already paired, or auto-approved
    because it judged the connection local), ``"rejected"`` for any other error response,
    and ``"closed"`` when the socket closed without a response to ``connect``.
    """

    identity: DeviceIdentity
    outcome: Outcome
    request_id: str | None = None
    error: dict[str, Any] | None = None
    hello: dict[str, Any] | None = None
    response: dict[str, Any] | None = None
    challenge: dict[str, Any] | None = None
    close_code: int | None = None
    close_reason: str | None = None
    frames: list[dict[str, Any]] = field(default_factory=list)

    @property
    def device_id(self) -> str:
        """The device id the gateway will list for this identity."""
        return self.identity.device_id

    @property
    def pairing_required(self) -> bool:
        """True when the gateway answered "pairing required"."""
        return self.outcome == "pairing-required"

    @property
    def error_code(self) -> str | None:
        """The top-level error code (e.g. ``NOT_PAIRED``, ``INVALID_REQUEST``), if any."""
        code = (self.error or {}).get("code")
        return code if isinstance(code, str) else None

    @property
    def detail_code(self) -> str | None:
        """The structured ``error.details.code`` (e.g. ``PAIRING_REQUIRED``), if any."""
        details = (self.error or {}).get("details")
        code = details.get("code") if isinstance(details, dict) else None
        return code if isinstance(code, str) else None

    @property
    def device_token(self) -> str | None:
        """The device token issued in ``hello-ok.auth`` after approval, if any."""
        auth = (self.hello or {}).get("auth")
        token = auth.get("deviceToken") if isinstance(auth, dict) else None
        return token if isinstance(token, str) else None


def _signature_payload(
    identity: DeviceIdentity,
    *,
    client_id: str,
    client_mode: str,
    role: str,
    scopes: list[str],
    signed_at_ms: int,
    token: str,
    nonce: str,
    platform: str,
    device_family: str | None,
) -> str:
    return "|".join(
        [
            "v3",
            identity.device_id,
            client_id,
            client_mode,
            role,
            ",".join(scopes),
            str(signed_at_ms),
            token,
            nonce,
            _normalize_metadata(platform),
            _normalize_metadata(device_family),
        ]
    )


async def _next_frame(ws: ClientConnection, frames: list[dict[str, Any]]) -> dict[str, Any]:
    while True:
        raw = await ws.recv()
        try:
            frame = json.loads(raw)
        except ValueError:
            # Non-JSON noise is not part of the protocol; skip it rather than fail the test.
            continue
        if isinstance(frame, dict):
            frames.append(frame)
            return frame


async def _attempt(
    url: str,
    token: str,
    identity: DeviceIdentity,
    *,
    display_name: str,
    client_id: str,
    client_mode: str,
    role: str,
    scopes: list[str],
    platform: str,
    device_family: str | None,
    version: str,
) -> PairingAttempt:
    frames: list[dict[str, Any]] = []
    challenge: dict[str, Any] | None = None
    response: dict[str, Any] | None = None
    # No Origin header (websockets sends none by default): a browser Origin would route the
    # connection through the Control UI/browser policy and its origin checks; this client
    # must look like a non-browser device. No proxy headers either: they change locality.
    async with connect(
        url,
        open_timeout=None,
        close_timeout=2,
        max_size=64 * 1024 * 1024,
        user_agent_header=f"moltconsole-test-device/{version}",
        proxy=None,
    ) as ws:
        try:
            while challenge is None:
                frame = await _next_frame(ws, frames)
                if frame.get("type") == "event" and frame.get("event") == "connect.challenge":
                    payload = frame.get("payload")
                    challenge = payload if isinstance(payload, dict) else {}
            nonce = challenge.get("nonce")
            ts = challenge.get("ts")
            if not isinstance(nonce, str) or not isinstance(ts, int):
                raise ValueError(f"malformed connect.challenge: {challenge!r}")
            # Signing with the gateway's own timestamp keeps us inside its clock-skew window
            # even if the host and container clocks disagree.
            signed_at = ts
            payload_text = _signature_payload(
                identity,
                client_id=client_id,
                client_mode=client_mode,
                role=role,
                scopes=scopes,
                signed_at_ms=signed_at,
                token=token,
                nonce=nonce,
                platform=platform,
                device_family=device_family,
            )
            client: dict[str, Any] = {
                "id": client_id,
                "displayName": display_name,
                "version": version,
                "platform": platform,
                "mode": client_mode,
            }
            if device_family:
                client["deviceFamily"] = device_family
            request_id = str(uuid.uuid4())
            # The schema is closed: unknown keys are rejected, so send only documented fields.
            connect_frame = {
                "type": "req",
                "id": request_id,
                "method": "connect",
                "params": {
                    "minProtocol": PROTOCOL_VERSION,
                    "maxProtocol": PROTOCOL_VERSION,
                    "client": client,
                    "role": role,
                    "scopes": scopes,
                    "caps": [],
                    "auth": {"token": token},
                    "userAgent": f"moltconsole-test-device/{version}",
                    "device": {
                        "id": identity.device_id,
                        "publicKey": identity.public_key,
                        "signature": identity.sign(payload_text),
                        "signedAt": signed_at,
                        "nonce": nonce,
                    },
                },
            }
            await ws.send(json.dumps(connect_frame))
            while response is None:
                frame = await _next_frame(ws, frames)
                if frame.get("type") == "res" and frame.get("id") == request_id:
                    response = frame
        except ConnectionClosed:
            pass
        # The gateway closes the socket itself after a failed connect; read the close frame
        # so the caller sees the code and reason. After hello-ok we close politely instead.
        if response is not None and response.get("ok") is True:
            await ws.close()
        else:
            try:
                await asyncio.wait_for(ws.wait_closed(), timeout=3)
            except TimeoutError:
                await ws.close()
        close_code = ws.close_code
        close_reason = ws.close_reason

    return _classify(identity, challenge, response, frames, close_code, close_reason)


def _classify(
    identity: DeviceIdentity,
    challenge: dict[str, Any] | None,
    response: dict[str, Any] | None,
    frames: list[dict[str, Any]],
    close_code: int | None,
    close_reason: str | None,
) -> PairingAttempt:
    common: dict[str, Any] = {
        "identity": identity,
        "response": response,
        "challenge": challenge,
        "close_code": close_code,
        "close_reason": close_reason,
        "frames": frames,
    }
    if response is None:
        return PairingAttempt(outcome="closed", **common)
    if response.get("ok") is True:
        payload = response.get("payload")
        return PairingAttempt(
            outcome="connected", hello=payload if isinstance(payload, dict) else None, **common
        )
    raw_error = response.get("error")
    error: dict[str, Any] = raw_error if isinstance(raw_error, dict) else {}
    details = error.get("details")
    details = details if isinstance(details, dict) else {}
    if details.get("code") == "PAIRING_REQUIRED" or error.get("code") == "NOT_PAIRED":
        request_id = details.get("requestId")
        return PairingAttempt(
            outcome="pairing-required",
            request_id=request_id if isinstance(request_id, str) and request_id else None,
            error=error,
            **common,
        )
    return PairingAttempt(outcome="rejected", error=error, **common)


def _is_startup_retry(attempt: PairingAttempt) -> float | None:
    # Right after /readyz turns green the gateway may still refuse connects with a retryable
    # UNAVAILABLE ("gateway starting" / startup sidecars); honour its retryAfterMs.
    error = attempt.error or {}
    if error.get("code") != "UNAVAILABLE" or error.get("retryable") is not True:
        return None
    after = error.get("retryAfterMs")
    return (after / 1000.0) if isinstance(after, int | float) and after > 0 else 0.5


async def connect_device(
    url: str,
    token: str,
    identity: DeviceIdentity,
    *,
    display_name: str = "moltconsole-test",
    client_id: str = "gateway-client",
    client_mode: str = "backend",
    role: str = "operator",
    scopes: list[str] | tuple[str, ...] = DEFAULT_SCOPES,
    platform: str = "linux",
    device_family: str | None = None,
    version: str = "0.0.0-test",
    # A parameter rather than a caller-side asyncio.timeout: the retry loop needs to know
    # the deadline to decide whether another "gateway starting" retry still fits.
    timeout: float = 15.0,
) -> PairingAttempt:
    """Perform one signed ``connect`` handshake for ``identity`` and report the outcome.

    Use it with a fresh :class:`DeviceIdentity` to create a pending pairing request, or
    with the identity of an earlier :class:`PairingAttempt` to check that an approval or
    rejection took effect (an approved device gets ``outcome == "connected"``).

    ``client_id``/``client_mode`` must be values the gateway knows (for example
    ``gateway-client``/``backend`` or ``cli``/``cli``); ``role`` ``operator`` is used
    because ``node`` requests from private addresses trigger the gateway's SSH
    auto-approval probe. Retryable "gateway starting" refusals are retried until
    ``timeout`` (seconds) runs out; :class:`TimeoutError` is raised if it does.
    """
    scope_list = list(scopes)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with asyncio.timeout(timeout):
        while True:
            try:
                attempt = await _attempt(
                    url,
                    token,
                    identity,
                    display_name=display_name,
                    client_id=client_id,
                    client_mode=client_mode,
                    role=role,
                    scopes=scope_list,
                    platform=platform,
                    device_family=device_family,
                    version=version,
                )
            except (OSError, InvalidHandshake):
                # The published port can accept and drop connections while the gateway
                # inside is still starting; keep trying until the deadline.
                if loop.time() + 0.5 >= deadline:
                    raise
                await asyncio.sleep(0.5)
                continue
            delay = _is_startup_retry(attempt)
            if delay is None or loop.time() + delay >= deadline:
                return attempt
            await asyncio.sleep(delay)


async def request_pairing(
    url: str,
    token: str,
    *,
    display_name: str = "moltconsole-test",
    timeout: float = 15.0,
    client_id: str = "gateway-client",
    client_mode: str = "backend",
    scopes: list[str] | tuple[str, ...] = DEFAULT_SCOPES,
) -> PairingAttempt:
    """Connect as a brand-new device so the gateway records a pending pairing request.

    ``url`` is the gateway WebSocket URL (``ws://127.0.0.1:<published port>``), ``token``
    the shared gateway token. The connection must not be "local" in the gateway's eyes
    (a loopback socket inside the container), or the gateway silently approves it; from
    the host through Docker's published port the gateway sees the bridge address, which
    is remote, so the expected result is ``outcome == "pairing-required"`` with
    ``request_id`` set. The returned attempt keeps the identity so the same device can
    reconnect via :func:`connect_device` after an approval.
    """
    return await connect_device(
        url,
        token,
        DeviceIdentity.generate(),
        display_name=display_name,
        client_id=client_id,
        client_mode=client_mode,
        scopes=scopes,
        timeout=timeout,
    )
