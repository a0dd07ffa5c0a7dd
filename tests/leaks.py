"""A scanner for words of a coin's chain in refusals (protocol.md revision 1.1, change 1).

No error body, HTML page, header or gRPC error (status message, trailing
metadata, the ErrorInfo detail) may carry a word of the coin, in any encoding.
:class:`RefusalScan` collects every refusal a test provokes and looks in each
for every word of the chains it was given: the raw bytes, base64url and base64
or hex in either case, at any offset of the blob (so a word wrapped in an
envelope or a status detail is found too).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import grpc
import requests
from google.rpc import error_details_pb2, status_pb2

from netpay.chain import Chain

__all__ = ["Refusal", "RefusalScan", "error_info", "seen_text"]

_B64_RUN = re.compile(rb"[A-Za-z0-9+/_-]{43,}")
_HEX_RUN = re.compile(rb"[0-9A-Fa-f]{64,}")
_WORD = 32


@dataclass(frozen=True)
class Refusal:
    """One refusal a test provoked: what it was and every byte it carried."""

    label: str
    code: str
    blobs: tuple[bytes, ...]
    index: int | None = None
    seen: str | None = None


def seen_text(word: bytes) -> str:
    """base64url(SHA-256("NP1-seen" || word)), computed here on its own (not with the
    code under test)."""
    digest = hashlib.sha256(b"NP1-seen" + word).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def error_info(exc: grpc.RpcError) -> error_details_pb2.ErrorInfo | None:
    """The ``netpay.v1`` ErrorInfo of a failed call, if it has one."""
    for key, value in exc.trailing_metadata() or ():  # type: ignore[attr-defined]
        if key != "grpc-status-details-bin":
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                return info
    return None


def _candidates(blob: bytes) -> Iterable[tuple[str, bytes]]:
    """Every 32 bytes ``blob`` could be carrying: raw, from a hex run, or from a
    base64 / base64url run (decoded at each of the four alignments)."""
    for k in range(len(blob) - _WORD + 1):
        yield "raw", blob[k : k + _WORD]
    for match in _HEX_RUN.finditer(blob):
        run = match.group()
        for k in range(len(run) - 2 * _WORD + 1):
            yield "hex", binascii.unhexlify(run[k : k + 2 * _WORD])
    for match in _B64_RUN.finditer(blob):
        run = match.group().replace(b"-", b"+").replace(b"_", b"/")
        for start in range(4):
            part = run[start:]
            # A word's own encoding ends in a 3-character group: complete it.
            part += b"A" * (-len(part) % 4) if len(part) % 4 > 1 else b""
            decoded = base64.b64decode(part[: len(part) - len(part) % 4])
            for k in range(len(decoded) - _WORD + 1):
                yield "base64", decoded[k : k + _WORD]


@dataclass
class RefusalScan:
    """Collects refusals and finds the words of the chains it was given in them."""

    words: list[tuple[bytes, str]] = field(default_factory=list)  # (word, its name)
    refusals: list[Refusal] = field(default_factory=list)

    def add_chain(self, chain: Chain) -> None:
        """Every word of ``chain``, root and seed included."""
        tag = chain.ecoin_id.hex()[:8]
        self.words.extend((chain.word(i), f"{tag} w[{i}]") for i in range(chain.n + 1))

    def http(self, label: str, resp: requests.Response) -> Refusal:
        """An HTTP refusal (4xx or 5xx): its body and every header."""
        assert resp.status_code >= 400, (label, resp.status_code, resp.text[:300])
        headers = "\n".join(f"{k}: {v}" for k, v in resp.headers.items()).encode()
        code, index, seen = "", None, None
        try:
            body = resp.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            code = str(body.get("error", ""))
            index = body.get("index") if isinstance(body.get("index"), int) else None
            seen = body.get("seen") if isinstance(body.get("seen"), str) else None
        else:
            code = f"http_{resp.status_code}"
        refusal = Refusal(label, code, (resp.content, headers), index, seen)
        self.refusals.append(refusal)
        return refusal

    def rpc(self, label: str, exc: grpc.RpcError) -> Refusal:
        """A failed gRPC call: its status message and all trailing metadata."""
        blobs = [str(exc.details() or "").encode()]  # type: ignore[attr-defined]
        for key, value in exc.trailing_metadata() or ():  # type: ignore[attr-defined]
            blobs.append(key.encode())
            blobs.append(value if isinstance(value, bytes) else str(value).encode())
        info = error_info(exc)
        code, index, seen = "", None, None
        if info is not None:
            code = info.reason
            for key, value in info.metadata.items():
                blobs.append(f"{key}={value}".encode())
            raw_index = info.metadata.get("index", "")
            index = int(raw_index) if raw_index.isdigit() else None
            seen = info.metadata.get("seen")
        refusal = Refusal(label, code, tuple(blobs), index, seen)
        self.refusals.append(refusal)
        return refusal

    def refused(self, label: str, call: Callable[[], object]) -> Refusal:
        """``call()`` must fail: its gRPC error, collected."""
        try:
            reply = call()
        except grpc.RpcError as exc:
            return self.rpc(label, exc)
        raise AssertionError(f"{label}: expected a refusal, got {reply}")

    def text(self, label: str, code: str, text: str) -> Refusal:
        """A refusal carried inside a reply (a REJECTED checkpoint item's detail)."""
        refusal = Refusal(label, code, (text.encode(),))
        self.refusals.append(refusal)
        return refusal

    def leaks(self) -> list[str]:
        """Every (refusal, word, encoding) where a word shows: empty when clean."""
        names = dict(self.words)
        found: set[str] = set()
        for refusal in self.refusals:
            for blob in refusal.blobs:
                for how, candidate in _candidates(blob):
                    if candidate in names:
                        found.add(f"{refusal.label}: {names[candidate]} as {how}")
        return sorted(found)

    def by_label(self, label: str) -> Refusal:
        [refusal] = [r for r in self.refusals if r.label == label]
        return refusal
