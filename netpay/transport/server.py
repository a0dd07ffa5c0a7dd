"""gRPC server factory: health, reflection, limits, graceful stop."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from netpay.encoding import is_loopback_host
from netpay.errors import InvalidArgument
from netpay.limits import DEFAULT_LIMITS

__all__ = [
    "GrpcServer",
    "channel_options",
    "check_listen_address",
    "create_grpc_server",
    "split_host_port",
]

Registrar = Callable[[grpc.Server], None]


def split_host_port(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise InvalidArgument(f"address must be host:port, got {address!r}")
    return host.strip("[]"), int(port)


def check_listen_address(address: str, *, insecure: bool) -> None:
    """Refuse a plaintext listener on a non-loopback address without --insecure."""
    host, _ = split_host_port(address)
    if not insecure and not is_loopback_host(host):
        raise InvalidArgument(
            f"refusing a plaintext listener on {host}: use a loopback address or --insecure"
        )


class GrpcServer:
    """A started gRPC server and its bound port."""

    def __init__(
        self, server: grpc.Server, host: str, port: int, health_servicer: health.HealthServicer
    ) -> None:
        self.server = server
        self.host = host
        self.port = port
        self._health = health_servicer

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def stop(self, grace_s: float = 5.0) -> None:
        self._health.enter_graceful_shutdown()
        self.server.stop(grace_s).wait()


def create_grpc_server(
    address: str,
    registrars: Sequence[Registrar],
    service_names: Sequence[str],
    *,
    insecure: bool = False,
    max_workers: int = 16,
) -> GrpcServer:
    """Build, bind and start a server; ``address`` may use port 0."""
    check_listen_address(address, insecure=insecure)
    limit = DEFAULT_LIMITS.max_grpc_message_bytes
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            ("grpc.so_reuseport", 0),
        ],
        maximum_concurrent_rpcs=max_workers * 8,
    )
    for register in registrars:
        register(server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    host, _ = split_host_port(address)
    port = server.add_insecure_port(address)
    if port == 0:
        raise InvalidArgument(f"could not bind {address}")
    server.start()
    for name in (*service_names, ""):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return GrpcServer(server, host, port, health_servicer)


_RECONNECT_INITIAL_MS = 1_000
_RECONNECT_MAX_MS = 5_000


def channel_options() -> list[tuple[str, int]]:
    limit = DEFAULT_LIMITS.max_grpc_message_bytes
    return [
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", limit),
        # A restarted peer is reached again within seconds: gRPC's default
        # reconnect backoff grows to 120 s, failing every call fast meanwhile.
        ("grpc.initial_reconnect_backoff_ms", _RECONNECT_INITIAL_MS),
        ("grpc.max_reconnect_backoff_ms", _RECONNECT_MAX_MS),
    ]
