// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

import "./ERC20.sol";

/// @title Fiat-backed stablecoin for the devnet: a plain ERC-20 whose owner mints against reserves.
contract Stablecoin is ERC20 {
    address public owner;

    error NotOwner(address caller);

    constructor(string memory name_, string memory symbol_, uint8 decimals_) ERC20(name_, symbol_, decimals_) {
        owner = msg.sender;
    }

    function mint(address to, uint256 value) external {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        _mint(to, value);
    }

    /// @notice Holders redeem by burning their own tokens.
    function burn(uint256 value) external {
        _burn(msg.sender, value);
    }
}
