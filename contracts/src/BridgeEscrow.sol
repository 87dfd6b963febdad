// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

interface IERC20 {
    function transfer(address to, uint256 value) external returns (bool);
    function transferFrom(address from, address to, uint256 value) external returns (bool);
}

/// @title Bridge escrow: the on-chain end of a Meridian corridor.
/// @notice `lock` takes the sender's tokens into escrow and emits a remittance request that the
///         relayer routes to the destination chain. Only the relayer releases escrowed funds to a
///         recipient (the destination side of a transfer) or refunds a lock to its sender (when
///         delivery failed before the deadline). Each transfer id is settled at most once, so a
///         relayer retry can never pay twice. `releaseBatch` pays many transfers in one
///         transaction: each is settled by its own id, and one that cannot be paid (settled
///         already, or its token transfer fails) is reported by `ReleaseRefused` without failing
///         the others.
contract BridgeEscrow {
    /// One release of a batch.
    struct Release {
        bytes32 transferId;
        address token;
        address recipient;
        uint256 amount;
    }

    struct Lock {
        address sender;
        address token;
        uint256 amount;
        bool refunded;
    }

    address public admin;
    address public relayer;
    uint256 public nextNonce;
    mapping(uint256 => Lock) public locks;
    mapping(bytes32 => bool) public settled;

    event RemittanceRequested(
        uint256 indexed nonce,
        address indexed sender,
        address indexed token,
        uint256 amount,
        string destChain,
        string recipient,
        string destAsset,
        uint64 deadline
    );
    event Released(bytes32 indexed transferId, address indexed token, address indexed recipient, uint256 amount);
    event Refunded(bytes32 indexed transferId, uint256 indexed nonce, address indexed sender, address token, uint256 amount);
    /// A release of a batch that paid nothing; `reason` is the revert data (ABI-encoded error).
    event ReleaseRefused(bytes32 indexed transferId, bytes reason);
    event RelayerChanged(address indexed previousRelayer, address indexed newRelayer);

    error NotAdmin(address caller);
    error NotRelayer(address caller);
    error ZeroAmount();
    error DeadlinePassed(uint64 deadline);
    error AlreadySettled(bytes32 transferId);
    error UnknownLock(uint256 nonce);
    error TokenTransferFailed();

    modifier onlyRelayer() {
        if (msg.sender != relayer) revert NotRelayer(msg.sender);
        _;
    }

    constructor(address relayer_) {
        admin = msg.sender;
        relayer = relayer_;
        emit RelayerChanged(address(0), relayer_);
    }

    function setRelayer(address newRelayer) external {
        if (msg.sender != admin) revert NotAdmin(msg.sender);
        emit RelayerChanged(relayer, newRelayer);
        relayer = newRelayer;
    }

    /// @param destChain CAIP-2 id of the destination chain, e.g. "eip155:31338".
    /// @param recipient the recipient's address on the destination chain, in that chain's format.
    /// @param destAsset CAIP-19 id of the asset the recipient receives.
    /// @param deadline unix seconds after which the relayer refunds instead of delivering.
    function lock(
        address token,
        uint256 amount,
        string calldata destChain,
        string calldata recipient,
        string calldata destAsset,
        uint64 deadline
    ) external returns (uint256 nonce) {
        if (amount == 0) revert ZeroAmount();
        if (deadline <= block.timestamp) revert DeadlinePassed(deadline);
        if (!IERC20(token).transferFrom(msg.sender, address(this), amount)) revert TokenTransferFailed();
        nonce = nextNonce++;
        locks[nonce] = Lock(msg.sender, token, amount, false);
        emit RemittanceRequested(nonce, msg.sender, token, amount, destChain, recipient, destAsset, deadline);
    }

    function release(bytes32 transferId, address token, address recipient, uint256 amount) external onlyRelayer {
        if (settled[transferId]) revert AlreadySettled(transferId);
        settled[transferId] = true;
        if (!IERC20(token).transfer(recipient, amount)) revert TokenTransferFailed();
        emit Released(transferId, token, recipient, amount);
    }

    /// Pays every release it can; each transfer id is settled at most once, and a release that
    /// cannot be paid emits `ReleaseRefused` instead of failing the batch.
    function releaseBatch(Release[] calldata releases) external onlyRelayer {
        for (uint256 i = 0; i < releases.length; i++) {
            Release calldata r = releases[i];
            if (settled[r.transferId]) {
                emit ReleaseRefused(r.transferId, abi.encodeWithSelector(AlreadySettled.selector, r.transferId));
                continue;
            }
            // Settled before the call (no re-entry can pay it twice), undone if the token refuses.
            settled[r.transferId] = true;
            (bool ok, bytes memory ret) = r.token.call(abi.encodeCall(IERC20.transfer, (r.recipient, r.amount)));
            if (!ok || (ret.length != 0 && (ret.length != 32 || !abi.decode(ret, (bool))))) {
                settled[r.transferId] = false;
                emit ReleaseRefused(r.transferId, ok ? abi.encodeWithSelector(TokenTransferFailed.selector) : ret);
                continue;
            }
            emit Released(r.transferId, r.token, r.recipient, r.amount);
        }
    }

    function refund(bytes32 transferId, uint256 nonce) external onlyRelayer {
        if (settled[transferId]) revert AlreadySettled(transferId);
        Lock storage l = locks[nonce];
        if (l.sender == address(0)) revert UnknownLock(nonce);
        if (l.refunded) revert AlreadySettled(transferId);
        settled[transferId] = true;
        l.refunded = true;
        if (!IERC20(l.token).transfer(l.sender, l.amount)) revert TokenTransferFailed();
        emit Refunded(transferId, nonce, l.sender, l.token, l.amount);
    }
}
