"""One small hierarchy of named errors; the CLI maps each to a one-line message and an exit code."""


class OnchainError(Exception):
    """Base of every error this package raises on purpose."""

    exit_code = 1


class InputError(OnchainError):
    """The user gave something malformed (an address, a block, a flag)."""

    exit_code = 2


class ConfigError(InputError):
    """The configuration file is missing, malformed or inconsistent."""


class RpcError(OnchainError):
    """The RPC endpoint failed, timed out or answered nonsense."""

    exit_code = 2


class RpcUnavailable(RpcError):
    """No endpoint answered at all."""


class ChainMismatch(InputError):
    """The endpoint serves a different chain than the configuration says."""


class NotAMarket(InputError):
    """The address given is not the contract the configuration says it is."""


class UnknownProtocolVersion(InputError):
    """A market runs a protocol release (or revision) whose rules onchain does not implement,
    or the configured version contradicts the one read on-chain."""


class DevnetError(OnchainError):
    """The local devnet could not be started or deployed."""

    exit_code = 3


class RpcResponseError(RpcError):
    """The endpoint answered with a JSON-RPC error or an HTTP error status.

    Keeps the code and HTTP status so callers can tell a refused log range from a real fault.
    """

    def __init__(
        self,
        message: str,
        code: int | None = None,
        http_status: int | None = None,
        data: object = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.http_status = http_status
        self.data = data

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.code, self.http_status, self.data))


class CallReverted(RpcError):
    """An eth_call reverted; `data` holds the raw revert data so callers can decode it."""

    def __init__(self, message: str, data: bytes = b"", target: str | None = None) -> None:
        super().__init__(message)
        self.data = data
        self.target = target

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.data, self.target))
