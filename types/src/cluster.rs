//! Several nodes, one relay: who a node is, which units of work are leased, and which node
//! should hold each.
//!
//! A unit of work that must have exactly one owner at a time — a chain's watcher, the ledger's
//! settlement, a destination chain's payouts (one owner of a signer's nonces), governance
//! execution — is a [`LeaseName`]. Live nodes split the leases between them by rendezvous
//! hashing ([`preferred_holder`]): every node computes the same owner from the same member list,
//! and a node joining or leaving moves only the leases it takes or held.

use std::fmt;
use std::str::FromStr;

use crate::ids::ChainId;

/// One running node process: a name chosen by the operator (or the host name) and a suffix
/// unique to this start, so a restarted node never mistakes its predecessor's lease for its own.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(String);

/// Longest node id accepted (it is stored and printed).
pub const NODE_ID_LEN_MAX: usize = 128;

impl NodeId {
    /// A node id from stored or configured text: 1 to [`NODE_ID_LEN_MAX`] printable ASCII
    /// characters without spaces.
    pub fn new(id: impl Into<String>) -> Result<NodeId, ClusterError> {
        let id = id.into();
        if id.is_empty() || id.len() > NODE_ID_LEN_MAX || !id.chars().all(|c| c.is_ascii_graphic())
        {
            return Err(ClusterError::NodeId(id));
        }
        Ok(NodeId(id))
    }

    /// The id of this start of node `name`: `<name>/<start>`, `start` being unique per process
    /// start (e.g. process id and start time).
    pub fn for_start(name: &str, start: &str) -> Result<NodeId, ClusterError> {
        NodeId::new(format!("{name}/{start}"))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A unit of work with one owner at a time.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LeaseName {
    /// Watching a chain: following its head and storing its events.
    Watch(ChainId),
    /// Settling transfers on the ledger (one writer of balances).
    Settle,
    /// Paying out on a destination chain (one owner of its signers' nonces).
    Payout(ChainId),
    /// Executing passed governance proposals.
    Governance,
}

impl fmt::Display for LeaseName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeaseName::Watch(chain) => write!(f, "watch:{chain}"),
            LeaseName::Settle => f.write_str("settle"),
            LeaseName::Payout(chain) => write!(f, "payout:{chain}"),
            LeaseName::Governance => f.write_str("gov"),
        }
    }
}

impl FromStr for LeaseName {
    type Err = ClusterError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let chain = |c: &str| {
            c.parse::<ChainId>()
                .map_err(|_| ClusterError::LeaseName(s.to_owned()))
        };
        match s.split_once(':') {
            _ if s == "settle" => Ok(LeaseName::Settle),
            _ if s == "gov" => Ok(LeaseName::Governance),
            Some(("watch", c)) => Ok(LeaseName::Watch(chain(c)?)),
            Some(("payout", c)) => Ok(LeaseName::Payout(chain(c)?)),
            _ => Err(ClusterError::LeaseName(s.to_owned())),
        }
    }
}

/// Bad cluster vocabulary (from configuration or a stored row).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// Not a usable node id.
    #[error("node id `{0}`: 1 to 128 printable characters without spaces")]
    NodeId(String),
    /// Not a lease this version knows.
    #[error("unknown lease `{0}`: expected settle, gov, watch:<chain> or payout:<chain>")]
    LeaseName(String),
}

/// The member that should hold `lease` among `members` (rendezvous, or highest-random-weight,
/// hashing: the member with the highest hash of (member, lease)); `None` without members.
/// Deterministic across nodes and versions (FNV-1a, not the standard library's randomised
/// hasher), so every node agrees given the same member list.
pub fn preferred_holder<'a>(lease: &LeaseName, members: &'a [NodeId]) -> Option<&'a NodeId> {
    let lease = lease.to_string();
    members
        .iter()
        .max_by_key(|m| (rendezvous_weight(m.as_str(), &lease), m.as_str()))
}

/// FNV-1a of `member`, a separator and `lease`, mixed once more so close inputs spread.
fn rendezvous_weight(member: &str, lease: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for b in member.bytes().chain([0u8]).chain(lease.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    }
    // splitmix64 finaliser.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize) -> Vec<NodeId> {
        (0..n)
            .map(|i| NodeId::new(format!("node-{i}/1")).unwrap())
            .collect()
    }

    fn leases() -> Vec<LeaseName> {
        let mut all = vec![LeaseName::Settle, LeaseName::Governance];
        for i in 0..30 {
            all.push(LeaseName::Watch(ChainId::evm(i)));
            all.push(LeaseName::Payout(ChainId::evm(i)));
        }
        all
    }

    #[test]
    fn lease_names_round_trip_and_unknown_ones_are_refused() {
        for lease in leases() {
            assert_eq!(lease.to_string().parse::<LeaseName>().unwrap(), lease);
        }
        assert_eq!("settle".parse::<LeaseName>().unwrap(), LeaseName::Settle);
        assert_eq!(
            "watch:eip155:1".parse::<LeaseName>().unwrap(),
            LeaseName::Watch(ChainId::evm(1))
        );
        for bad in [
            "",
            "settle:x",
            "watch:",
            "watch:nochain",
            "deliver:eip155:1",
        ] {
            assert!(bad.parse::<LeaseName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn node_ids_refuse_blank_and_spaces() {
        assert!(NodeId::new("a b").is_err());
        assert!(NodeId::new("").is_err());
        assert!(NodeId::new("x".repeat(NODE_ID_LEN_MAX + 1)).is_err());
        assert_eq!(
            NodeId::for_start("relay-a", "pid=7").unwrap().as_str(),
            "relay-a/pid=7"
        );
    }

    #[test]
    fn every_member_gets_a_share_and_the_order_of_members_does_not_matter() {
        let members = nodes(3);
        let mut reversed = members.clone();
        reversed.reverse();
        let mut counts = [0usize; 3];
        for lease in leases() {
            let holder = preferred_holder(&lease, &members).unwrap();
            assert_eq!(preferred_holder(&lease, &reversed), Some(holder));
            counts[members.iter().position(|m| m == holder).unwrap()] += 1;
        }
        // 62 leases over 3 members: each takes some, none takes nearly all.
        assert!(counts.iter().all(|&c| (8..=40).contains(&c)), "{counts:?}");
        assert_eq!(preferred_holder(&LeaseName::Settle, &[]), None);
    }

    #[test]
    fn a_member_leaving_moves_only_its_own_leases() {
        let members = nodes(4);
        let gone = &members[2];
        let rest: Vec<NodeId> = members.iter().filter(|m| *m != gone).cloned().collect();
        for lease in leases() {
            let before = preferred_holder(&lease, &members).unwrap();
            let after = preferred_holder(&lease, &rest).unwrap();
            if before != gone {
                assert_eq!(before, after, "{lease} moved though its holder stayed");
            }
        }
    }
}
