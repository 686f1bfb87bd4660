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


class DevnetError(OnchainError):
    """The local devnet could not be started or deployed."""

    exit_code = 3
