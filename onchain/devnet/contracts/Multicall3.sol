// SPDX-License-Identifier: MIT
pragma solidity ^0.8.19;

/// @title Multicall3 (devnet build)
/// @notice Batches many read calls into one eth_call. Written for this project; its ABI matches
///         the canonical Multicall3 (0xcA11bde05977b3631167028862bE2a173976CA11) for the functions
///         below, so its runtime code is placed at that address on a devnet and the same reader
///         code runs against devnet and mainnet.
contract Multicall3 {
    struct Call3 {
        address target;
        bool allowFailure;
        bytes callData;
    }

    struct Result {
        bool success;
        bytes returnData;
    }

    /// @notice Calls each target in order. Reverts with "Multicall3: call failed" when a call
    ///         fails and its allowFailure is false; otherwise records (success, returnData).
    function aggregate3(Call3[] calldata calls) external payable returns (Result[] memory returnData) {
        uint256 n = calls.length;
        returnData = new Result[](n);
        for (uint256 i = 0; i < n; ++i) {
            Call3 calldata c = calls[i];
            (bool success, bytes memory data) = c.target.call(c.callData);
            require(success || c.allowFailure, "Multicall3: call failed");
            returnData[i] = Result(success, data);
        }
    }

    function getBlockNumber() external view returns (uint256 blockNumber) {
        return block.number;
    }

    function getCurrentBlockTimestamp() external view returns (uint256 timestamp) {
        return block.timestamp;
    }

    function getEthBalance(address addr) external view returns (uint256 balance) {
        return addr.balance;
    }

    /// @notice Hash of one of the 256 most recent blocks; zero for older or future blocks.
    function getBlockHash(uint256 blockNumber) external view returns (bytes32 blockHash) {
        return blockhash(blockNumber);
    }
}
