"""A real redis-server (Debian's `redis-server` package) on 127.0.0.1 for tests, writing no files.

Optionally with AUTH (`password`) and TLS (`tls=True`: a CA and a server certificate for
127.0.0.1 made with openssl, served on the same port; clients use `ca_file`). `stop()` and
`start()` again on the same port are how "Redis went away, then came back" is tested.

In tests:      with RedisServer(tmp_path) as redis: ... redis.url ...
As a process:  python -m tests.fakes.redis_server --port 6390 --dir DATA_DIR (execs redis-server)
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

INSTALL_HINT = "redis-server is not installed (Debian/Ubuntu: apt-get install -y redis-server)"


def redis_available() -> bool:
    return shutil.which("redis-server") is not None and shutil.which("redis-cli") is not None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_argv(port: int, data_dir: Path, password: str | None = None) -> list[str]:
    """redis-server on 127.0.0.1:PORT that writes nothing to disk."""
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1"]
    argv += ["--save", "", "--appendonly", "no", "--dir", str(data_dir)]
    return argv + (["--requirepass", password] if password else [])


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key), the server's valid for 127.0.0.1."""
    names = ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem")
    ca_key, ca, key, csr, cert = (directory / name for name in names)
    extensions = directory / "server.ext"
    extensions.write_text("subjectAltName=IP:127.0.0.1\nkeyUsage=digitalSignature\n")
    for argv in (
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
         "-days", "2", "-subj", "/CN=test redis CA"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
         "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert,
         "-days", "2", "-extfile", extensions],
    ):  # fmt: skip
        openssl = ["openssl", *map(str, argv)]
        subprocess.run(openssl, check=True, capture_output=True)
    return ca, cert, key


class RedisServer:
    def __init__(self, directory: Path, password: str | None = None, tls: bool = False) -> None:
        self.directory = directory
        self.password = password
        self.port = free_port()
        self.ca_file: Path | None = None
        self._tls: list[str] = []
        if tls:
            self.ca_file, cert, key = make_certificates(directory)
            # TLS only, on the one port; clients need not present a certificate (as Memorystore).
            self._tls = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(cert),
                         "--tls-key-file", str(key), "--tls-ca-cert-file", str(self.ca_file),
                         "--tls-auth-clients", "no"]  # fmt: skip
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        scheme = "rediss" if self._tls else "redis"
        auth = f":{self.password}@" if self.password else ""
        return f"{scheme}://{auth}127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> RedisServer:
        argv = server_argv(self.port, self.directory, self.password) + self._tls
        log = (self.directory / "redis.log").open("ab")
        self._process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while self.cli("PING") != "PONG":
            if self._process.poll() is not None or time.monotonic() > deadline:
                log_text = (self.directory / "redis.log").read_text()
                raise RuntimeError(f"redis-server did not start:\n{log_text}")
            time.sleep(0.02)
        return self

    def cli(self, *command: str) -> str:
        """One redis-cli command against this server: its answer, or "" when it does not answer."""
        argv = ["redis-cli", "-h", "127.0.0.1", "-p", str(self.port)]
        if self.password:
            argv += ["--no-auth-warning", "-a", self.password]
        if self.ca_file:
            argv += ["--tls", "--cacert", str(self.ca_file)]
        result = subprocess.run([*argv, *command], capture_output=True, text=True, check=False)
        return result.stdout.strip() if result.returncode == 0 else ""

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=10)
        self._process = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="redis-server on 127.0.0.1, no persistence")
    parser.add_argument("--port", type=int, default=6390)
    parser.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args()
    argv = server_argv(args.port, args.dir)
    os.execvp(argv[0], argv)  # noqa: S606 - the process is redis-server itself (stop = SIGTERM)


if __name__ == "__main__":
    main()
