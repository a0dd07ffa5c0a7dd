"""`netpay broker serve` and `netpay broker add-vendor`."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from broker.server import BrokerConfig, start_broker
from netpay.cli.main import main
from netpay.clock import FakeClock
from netpay.envelope import SigningKey
from netpay.v1 import broker_pb2 as bpb
from netpay.v1 import broker_pb2_grpc


def netpay_command() -> list[str]:
    return [sys.executable, "-m", "netpay.cli.main"]


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().out


def test_add_vendor_prints_a_token_that_enrolls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "b"
    code, out = run_cli(["broker", "add-vendor", "v1", "--data-dir", str(data_dir)], capsys)
    assert code == 0
    token = out.strip()
    assert out == token + "\n" and len(token) == 43
    code, out = run_cli(
        [
            "broker",
            "add-vendor",
            "v2",
            "--origin",
            "http://127.0.0.1:8002",
            "--data-dir",
            str(data_dir),
            "--json",
        ],
        capsys,
    )
    assert code == 0
    line = json.loads(out)
    assert set(line) == {"vendor_id", "enrollment_token"} and line["vendor_id"] == "v2"
    handle = start_broker(BrokerConfig(data_dir=data_dir), clock=FakeClock())
    try:
        with grpc.insecure_channel(handle.grpc_address) as ch:
            stub = broker_pb2_grpc.BrokerStub(ch)
            for vendor_id, enroll in (("v1", token), ("v2", line["enrollment_token"])):
                reply = stub.RegisterVendor(
                    bpb.RegisterVendorRequest(
                        enrollment_token=enroll,
                        public_key=SigningKey.generate().public_key,
                        grpc_address="127.0.0.1:1",
                    )
                )
                assert reply.vendor_id == vendor_id
    finally:
        handle.stop()


def test_add_vendor_while_the_broker_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "b"
    handle = start_broker(BrokerConfig(data_dir=data_dir), clock=FakeClock())
    try:
        code, out = run_cli(["broker", "add-vendor", "live", "--data-dir", str(data_dir)], capsys)
        assert code == 0
        with grpc.insecure_channel(handle.grpc_address) as ch:
            reply = broker_pb2_grpc.BrokerStub(ch).RegisterVendor(
                bpb.RegisterVendorRequest(
                    enrollment_token=out.strip(),
                    public_key=SigningKey.generate().public_key,
                    grpc_address="127.0.0.1:1",
                )
            )
        assert reply.vendor_id == "live"
    finally:
        handle.stop()


def test_add_vendor_reports_bad_input_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["broker", "add-vendor", "Not_Valid", "--data-dir", str(tmp_path)])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert "vendor id" in captured.err


def test_add_vendor_honours_netpay_db_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db_file = tmp_path / "elsewhere" / "broker.db"
    monkeypatch.setenv("NETPAY_DB_URL", f"sqlite:///{db_file}")
    code, out = run_cli(["broker", "add-vendor", "v1", "--data-dir", str(tmp_path / "b")], capsys)
    assert code == 0 and out.strip()
    assert db_file.exists()
    assert not (tmp_path / "b" / "broker.sqlite").exists()


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["broker", "--help"],
        ["broker", "serve", "--help"],
        ["broker", "add-vendor", "--help"],
    ):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 0
        assert "examples:" in capsys.readouterr().out


def test_serve_prints_the_ready_line_and_stops_on_sigterm(tmp_path: Path) -> None:
    argv = [
        *netpay_command(),
        "broker",
        "serve",
        "--data-dir",
        str(tmp_path / "b"),
        "--grpc-addr",
        "127.0.0.1:0",
        "--currency",
        "EUR",
        "USD",
        "--broker-id",
        "cli-broker",
    ]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            ready = json.loads(line)
            assert set(ready) == {"grpc", "web"} and ready["web"] is None
            host, port = ready["grpc"].rsplit(":", 1)
            assert host == "127.0.0.1" and int(port) > 0
            with grpc.insecure_channel(ready["grpc"]) as ch:
                info = broker_pb2_grpc.BrokerStub(ch).GetInfo(bpb.GetInfoRequest(), timeout=10)
            assert info.broker_id == "cli-broker" and list(info.currencies) == ["EUR", "USD"]
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, err
    assert out == ""  # nothing after the ready line
