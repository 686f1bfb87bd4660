// SPDX-License-Identifier: MIT
pragma solidity ^0.8.19;

/// @title DevnetPriceFeed
/// @notice A devnet stand-in for a Chainlink price aggregator: anyone may set the answer.
///         It exists so local tests can move prices; never deploy it where value is at stake.
///         Exposes the aggregator getters readers use (latestAnswer, latestRoundData, ...).
contract DevnetPriceFeed {
    event AnswerUpdated(int256 indexed current, uint256 indexed roundId, uint256 updatedAt);

    uint8 public immutable decimals;
    int256 public latestAnswer;
    uint256 public latestTimestamp;
    uint256 public latestRound;

    constructor(int256 answer, uint8 decimals_) {
        decimals = decimals_;
        setAnswer(answer);
    }

    /// @notice Starts a new round with `answer`, stamped with the current block time.
    function setAnswer(int256 answer) public {
        latestAnswer = answer;
        latestRound += 1;
        latestTimestamp = block.timestamp;
        emit AnswerUpdated(answer, latestRound, block.timestamp);
    }

    function latestRoundData()
        external
        view
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound)
    {
        roundId = uint80(latestRound);
        return (roundId, latestAnswer, latestTimestamp, latestTimestamp, roundId);
    }

    function description() external pure returns (string memory) {
        return "DevnetPriceFeed (devnet stand-in for a Chainlink aggregator)";
    }
}
