//! The remittance memo: how a sender on a chain without Meridian's escrow contract (Cosmos,
//! Substrate) says where a transfer to the relay's escrow account should go.
//!
//! The EVM escrow takes destination, recipient and deadline as call arguments. On Cosmos the same
//! facts travel in the transaction memo of a bank send to the escrow address; on Substrate in a
//! `System.remark_with_event` next to the transfer inside one `Utility.batch_all`. One format for
//! both, short enough for Cosmos' default 256-byte memo limit:
//!
//! ```text
//! meridian:v1 to=<recipient> asset=<CAIP-19 destination asset> [deadline=<unix seconds>]
//! ```
//!
//! Fields are separated by spaces and may come in any order; the destination chain is the
//! asset's chain. Without `deadline` the transfer gets [`DEFAULT_DEADLINE_SECS`] from its block's
//! time.

use std::str::FromStr;

use crate::ids::AssetId;

/// The memo's leading tag; anything else is not a Meridian memo.
pub const MEMO_TAG: &str = "meridian:v1";

/// Deadline given to a transfer whose memo names none: one day after its block.
pub const DEFAULT_DEADLINE_SECS: u64 = 86_400;

/// Where a remittance should go, as its memo says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemittanceMemo {
    /// Recipient address on the destination chain, in that chain's format.
    pub recipient: String,
    /// What the recipient should receive.
    pub dest_asset: AssetId,
    /// Unix seconds after which the transfer is refunded instead; `None` means the default.
    pub deadline: Option<u64>,
}

/// Why a memo is not a valid remittance memo.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemoError {
    /// The memo does not start with [`MEMO_TAG`].
    #[error("memo does not start with `{MEMO_TAG}`")]
    NotMeridian,
    /// A field is not `key=value`, or its key is unknown or repeated.
    #[error("memo field `{0}` is not one of to=, asset=, deadline= (each at most once)")]
    BadField(String),
    /// A required field is missing.
    #[error("memo lacks `{0}=`")]
    Missing(&'static str),
    /// `asset=` is not a CAIP-19 id.
    #[error("memo asset `{0}` is not a CAIP-19 asset id")]
    BadAsset(String),
    /// `deadline=` is not unix seconds.
    #[error("memo deadline `{0}` is not unix seconds")]
    BadDeadline(String),
}

impl RemittanceMemo {
    /// The memo text for these fields.
    pub fn render(&self) -> String {
        let mut s = format!("{MEMO_TAG} to={} asset={}", self.recipient, self.dest_asset);
        if let Some(d) = self.deadline {
            s.push_str(&format!(" deadline={d}"));
        }
        s
    }

    /// The deadline for a transfer in a block made at `block_time` (unix seconds).
    pub fn deadline_after(&self, block_time: u64) -> u64 {
        self.deadline
            .unwrap_or_else(|| block_time.saturating_add(DEFAULT_DEADLINE_SECS))
    }
}

impl FromStr for RemittanceMemo {
    type Err = MemoError;

    fn from_str(memo: &str) -> Result<Self, Self::Err> {
        let mut words = memo.split_whitespace();
        if words.next() != Some(MEMO_TAG) {
            return Err(MemoError::NotMeridian);
        }
        let (mut to, mut asset, mut deadline) = (None, None, None);
        for word in words {
            let (key, value) = word
                .split_once('=')
                .filter(|(_, v)| !v.is_empty())
                .ok_or_else(|| MemoError::BadField(word.into()))?;
            let slot = match key {
                "to" => &mut to,
                "asset" => &mut asset,
                "deadline" => &mut deadline,
                _ => return Err(MemoError::BadField(word.into())),
            };
            if slot.replace(value).is_some() {
                return Err(MemoError::BadField(word.into()));
            }
        }
        let recipient = to.ok_or(MemoError::Missing("to"))?.to_owned();
        let asset = asset.ok_or(MemoError::Missing("asset"))?;
        let dest_asset = asset
            .parse()
            .map_err(|_| MemoError::BadAsset(asset.into()))?;
        let deadline = deadline
            .map(|d| d.parse().map_err(|_| MemoError::BadDeadline(d.into())))
            .transpose()?;
        Ok(RemittanceMemo {
            recipient,
            dest_asset,
            deadline,
        })
    }
}

/// Tag of the relay's own payout transactions on account-based chains (Cosmos memo, Substrate
/// remark): `meridian:payout <transfer id>` for a delivery, `meridian:refund <transfer id>` for a
/// refund. The watcher turns them into `Released` / `Refunded` events, the account-chain analogue
/// of the EVM escrow's events, which is how the node knows a payout happened exactly once.
pub const PAYOUT_TAG: &str = "meridian:payout";
/// See [`PAYOUT_TAG`].
pub const REFUND_TAG: &str = "meridian:refund";

/// What a payout marker says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayoutMarker {
    /// A delivery of the transfer.
    Release(String),
    /// A refund of the transfer.
    Refund(String),
}

impl PayoutMarker {
    /// The marker text.
    pub fn render(&self) -> String {
        match self {
            PayoutMarker::Release(id) => format!("{PAYOUT_TAG} {id}"),
            PayoutMarker::Refund(id) => format!("{REFUND_TAG} {id}"),
        }
    }

    /// Reads a marker; anything else is `None`.
    pub fn parse(text: &str) -> Option<PayoutMarker> {
        let (tag, id) = text.trim().split_once(' ')?;
        let id = id.trim();
        if id.is_empty() || id.contains(char::is_whitespace) {
            return None;
        }
        match tag {
            PAYOUT_TAG => Some(PayoutMarker::Release(id.to_owned())),
            REFUND_TAG => Some(PayoutMarker::Refund(id.to_owned())),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payout_markers_round_trip() {
        for m in [
            PayoutMarker::Release("tr:eip155:1/5/0xab/0xcd/3".into()),
            PayoutMarker::Refund("tr:x".into()),
        ] {
            assert_eq!(PayoutMarker::parse(&m.render()), Some(m));
        }
        assert_eq!(PayoutMarker::parse("meridian:payout"), None);
        assert_eq!(PayoutMarker::parse("meridian:payout a b"), None);
        assert_eq!(PayoutMarker::parse("meridian:v1 to=x"), None);
    }

    #[test]
    fn round_trips_and_accepts_any_order() {
        let memo: RemittanceMemo =
            "meridian:v1 asset=eip155:31338/erc20:0xAbC to=0x00000000000000000000000000000000000000b0"
                .parse()
                .unwrap();
        assert_eq!(memo.recipient, "0x00000000000000000000000000000000000000b0");
        assert_eq!(memo.dest_asset.as_str(), "eip155:31338/erc20:0xAbC");
        assert_eq!(memo.deadline, None);
        assert_eq!(memo.deadline_after(100), 100 + DEFAULT_DEADLINE_SECS);
        let with_deadline = RemittanceMemo {
            deadline: Some(7),
            ..memo
        };
        assert_eq!(with_deadline.render().parse(), Ok(with_deadline.clone()));
        assert_eq!(with_deadline.deadline_after(100), 7);
    }

    #[test]
    fn rejects_bad_memos_with_the_reason() {
        let bad = [
            ("hello", MemoError::NotMeridian),
            ("", MemoError::NotMeridian),
            (
                "meridian:v1 asset=eip155:1/erc20:0x1",
                MemoError::Missing("to"),
            ),
            ("meridian:v1 to=x", MemoError::Missing("asset")),
            (
                "meridian:v1 to=x to=y asset=eip155:1/erc20:0x1",
                MemoError::BadField("to=y".into()),
            ),
            (
                "meridian:v1 to= asset=eip155:1/erc20:0x1",
                MemoError::BadField("to=".into()),
            ),
            (
                "meridian:v1 to=x from=y asset=eip155:1/erc20:0x1",
                MemoError::BadField("from=y".into()),
            ),
            (
                "meridian:v1 to=x asset=usd",
                MemoError::BadAsset("usd".into()),
            ),
            (
                "meridian:v1 to=x asset=eip155:1/erc20:0x1 deadline=soon",
                MemoError::BadDeadline("soon".into()),
            ),
        ];
        for (memo, want) in bad {
            assert_eq!(memo.parse::<RemittanceMemo>(), Err(want), "{memo}");
        }
    }
}
