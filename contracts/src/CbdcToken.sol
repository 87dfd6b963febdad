// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

import "./ERC20.sol";

/// @title CBDC token: an ERC-20 whose supply only the issuer (the central bank) changes.
/// @notice The admin appoints the issuer; the issuer mints to any account and burns from accounts
///         that approved it (redemption) or from its own balance.
contract CbdcToken is ERC20 {
    address public admin;
    address public issuer;

    event IssuerChanged(address indexed previousIssuer, address indexed newIssuer);

    error NotAdmin(address caller);
    error NotIssuer(address caller);

    modifier onlyIssuer() {
        if (msg.sender != issuer) revert NotIssuer(msg.sender);
        _;
    }

    constructor(string memory name_, string memory symbol_, uint8 decimals_, address issuer_)
        ERC20(name_, symbol_, decimals_)
    {
        admin = msg.sender;
        issuer = issuer_;
        emit IssuerChanged(address(0), issuer_);
    }

    function setIssuer(address newIssuer) external {
        if (msg.sender != admin) revert NotAdmin(msg.sender);
        emit IssuerChanged(issuer, newIssuer);
        issuer = newIssuer;
    }

    function mint(address to, uint256 value) external onlyIssuer {
        _mint(to, value);
    }

    /// @notice Burns `value` from `from`; the issuer needs `from`'s allowance unless it burns its own.
    function burn(address from, uint256 value) external onlyIssuer {
        if (from != msg.sender) _spendAllowance(from, msg.sender, value);
        _burn(from, value);
    }
}
