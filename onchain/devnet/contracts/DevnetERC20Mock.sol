// SPDX-License-Identifier: GPL-2.0-or-later
pragma solidity ^0.8.19;

import {ERC20Mock} from "@morpho-org/morpho-blue/src/mocks/ERC20Mock.sol";

/// @title DevnetERC20Mock
/// @notice A devnet stand-in token: the `ERC20Mock` of `@morpho-org/morpho-blue` (anyone may
///         `setBalance`) plus the `name`, `symbol` and `decimals` readers expect of real tokens,
///         which the package's mock lacks. Never deploy it where value is at stake.
contract DevnetERC20Mock is ERC20Mock {
    string public name;
    string public symbol;
    uint8 public immutable decimals;

    constructor(string memory name_, string memory symbol_, uint8 decimals_) {
        name = name_;
        symbol = symbol_;
        decimals = decimals_;
    }
}
