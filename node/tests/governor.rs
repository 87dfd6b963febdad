//! An OpenZeppelin Governor on anvil (ERC20Votes token, TimelockController, compiled from
//! `@openzeppelin/contracts` with solc-js): its proposal and votes are ingested by the EVM
//! watcher and mirrored by the governance engine with the same tally as the contract's own
//! `proposalVotes`; queueing and execution on chain move the mirrored proposal too.

#[path = "support/anvil.rs"]
#[allow(dead_code)]
mod anvil;

use std::sync::Arc;

use ethers::abi::Abi;
use ethers::contract::Contract;
use ethers::providers::{Http, Middleware, Provider};
use ethers::types::{Address, U256};
use meridian_governance::engine::mirrored_id;
use meridian_governance::Governance;
use meridian_node::devnet::stack::{deploy, DevClient};
use meridian_node::devnet::{dev_client, free_port, AnvilNode};
use meridian_relayer::contracts as art;
use meridian_relayer::evm;
use meridian_relayer::evm::{PoliteHttp, RpcPool};
use meridian_relayer::{ChainFollower, FollowerSettings};
use meridian_types::config::{ChainConfig, ContractConfig, ContractKind, FinalityRule, TokenPower};
use meridian_types::{ChainFamily, ChainId};

fn contract(abi: &str, at: Address, client: Arc<DevClient>) -> Contract<DevClient> {
    let abi: Abi = serde_json::from_str(abi).unwrap();
    Contract::new(at, abi, client)
}

async fn send(c: &Contract<DevClient>, method: &str, args: impl ethers::abi::Tokenize) {
    c.method::<_, ()>(method, args)
        .unwrap()
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method}: {e}"))
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{method}: no receipt"));
}

async fn mine(p: &Provider<Http>, n: u64) {
    let _: serde_json::Value = p.request("anvil_mine", [U256::from(n)]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_governor_proposal_is_mirrored_with_the_contracts_own_tally() {
    let Some(bin) = anvil::anvil_or_skip() else {
        return;
    };
    let port = free_port().unwrap();
    let node = AnvilNode::start(&bin, port, 31337, None, None)
        .await
        .unwrap();
    let url = node.http_url();
    let clients: Vec<Arc<DevClient>> = (0..4)
        .map(|i| dev_client(&url, 31337, i).unwrap())
        .collect();
    let provider = Provider::<Http>::try_from(url.as_str()).unwrap();
    let unit = U256::exp10(18);

    // The DAO: votes token, timelock, Governor (voting delay 1 block, period 20 blocks).
    let token = deploy(
        clients[0].clone(),
        art::MERIDIAN_VOTES_ABI,
        art::MERIDIAN_VOTES_BIN,
        U256::from(1_000u64) * unit,
    )
    .await
    .unwrap();
    let timelock = deploy(
        clients[0].clone(),
        art::MERIDIAN_TIMELOCK_ABI,
        art::MERIDIAN_TIMELOCK_BIN,
        (
            U256::from(1u64),
            Vec::<Address>::new(),
            vec![Address::zero()],
            clients[0].address(),
        ),
    )
    .await
    .unwrap();
    let governor = deploy(
        clients[0].clone(),
        art::MERIDIAN_GOVERNOR_ABI,
        art::MERIDIAN_GOVERNOR_BIN,
        (token, timelock, 1u64, 20u32),
    )
    .await
    .unwrap();
    let tl = contract(art::MERIDIAN_TIMELOCK_ABI, timelock, clients[0].clone());
    for role in ["PROPOSER_ROLE", "CANCELLER_ROLE"] {
        let id: [u8; 32] = tl
            .method::<_, [u8; 32]>(role, ())
            .unwrap()
            .call()
            .await
            .unwrap();
        send(&tl, "grantRole", (id, governor)).await;
    }
    // Voters hold 100, 250 and 50 votes and delegate to themselves.
    let votes0 = contract(art::MERIDIAN_VOTES_ABI, token, clients[0].clone());
    for (i, amount) in [(1usize, 100u64), (2, 250), (3, 50)] {
        send(
            &votes0,
            "transfer",
            (clients[i].address(), U256::from(amount) * unit),
        )
        .await;
        let v = contract(art::MERIDIAN_VOTES_ABI, token, clients[i].clone());
        send(&v, "delegate", clients[i].address()).await;
    }

    // A proposal: the timelock approves voter 1 for 1 MVOTE (a harmless call it can make).
    let approve = contract(art::MERIDIAN_VOTES_ABI, token, clients[0].clone())
        .encode("approve", (clients[1].address(), U256::from(1u64)))
        .unwrap();
    let description = "# Approve the corridor operator\nA first on-chain proposal.".to_string();
    // It also sends 1 000 wei (the proposal is defeated, so the timelock never needs them):
    // the mirror must keep the value with the call.
    let (targets, values, calldatas) = (
        vec![token],
        vec![U256::from(1_000u64)],
        vec![approve.clone()],
    );
    let gov1 = contract(art::MERIDIAN_GOVERNOR_ABI, governor, clients[1].clone());
    send(
        &gov1,
        "propose",
        (
            targets.clone(),
            values.clone(),
            calldatas.clone(),
            description.clone(),
        ),
    )
    .await;
    let desc_hash = ethers::utils::keccak256(description.as_bytes());
    let proposal_id: U256 = gov1
        .method::<_, U256>(
            "hashProposal",
            (
                targets.clone(),
                values.clone(),
                calldatas.clone(),
                desc_hash,
            ),
        )
        .unwrap()
        .call()
        .await
        .unwrap();
    mine(&provider, 2).await;
    // For, Against, Abstain (with a reason).
    for (i, support) in [(1usize, 1u8), (2, 0)] {
        let g = contract(art::MERIDIAN_GOVERNOR_ABI, governor, clients[i].clone());
        send(&g, "castVote", (proposal_id, support)).await;
    }
    let g3 = contract(art::MERIDIAN_GOVERNOR_ABI, governor, clients[3].clone());
    send(
        &g3,
        "castVoteWithReason",
        (proposal_id, 2u8, "not my corridor".to_string()),
    )
    .await;

    // Meridian watches the Governor and mirrors what it sees.
    let chain: ChainId = "eip155:31337".parse().unwrap();
    let config = ChainConfig {
        id: chain.clone(),
        name: "dao".into(),
        rpc_urls: vec![url.parse().unwrap()],
        ws_url: None,
        finality: FinalityRule::Confirmations(0),
        start_block: 0,
        log_range_max: 500,
        poll_interval_ms: 200,
        rpc_timeout_ms: 5_000,
        contracts: vec![ContractConfig {
            address: format!("{governor:#x}"),
            kind: ContractKind::Governor,
        }],
        escrow: None,
        fee: None,
        signer_key: None,
        release_batch_max: 1,
    };
    let dir = tempfile::tempdir().unwrap();
    let store = anvil::sqlite_store(&dir).await;
    store
        .register_chain(&chain, "dao", ChainFamily::Evm)
        .await
        .unwrap();
    let follower = ChainFollower::new(
        evm::connect(0, &config).await.unwrap(),
        store.clone(),
        FollowerSettings {
            start_block: 0,
            range_max: 500,
            poll_interval: std::time::Duration::from_millis(200),
        },
        Arc::new(tokio::sync::Notify::new()),
    );
    anvil::drain(&follower).await;
    let routing = Arc::new(meridian_router::RoutingState::new(
        meridian_router::Router::new(&[], &[], Default::default()).unwrap(),
        Default::default(),
    ));
    let mut providers = std::collections::HashMap::new();
    providers.insert(chain.clone(), pool(&chain, &provider));
    let gov = Governance::new(store.clone(), routing, Default::default(), providers);
    gov.tick(chrono::Utc::now()).await.unwrap();

    let id = mirrored_id(&chain, &proposal_id.to_string());
    let p = store
        .proposal(&id)
        .await
        .unwrap()
        .expect("proposal mirrored");
    assert_eq!(p.title, "Approve the corridor operator");
    assert_eq!(p.actions[0]["value"], serde_json::json!("1000"));
    // The third voter's reason is kept with their vote; a plain castVote has none.
    let reasons: Vec<Option<String>> = store
        .votes(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.reason)
        .collect();
    assert_eq!(
        reasons,
        vec![None, None, Some("not my corridor".to_owned())]
    );
    assert_eq!(p.origin, "eip155:31337");
    assert_eq!(
        p.proposer,
        format!("eip155:31337:{:#x}", clients[1].address())
    );
    let ours = gov.count(&p).await.unwrap();
    let (against, for_, abstain): (U256, U256, U256) = gov1
        .method::<_, (U256, U256, U256)>("proposalVotes", proposal_id)
        .unwrap()
        .call()
        .await
        .unwrap();
    let theirs: Vec<u128> = [against, for_, abstain]
        .iter()
        .map(|v| v.as_u128())
        .collect();
    assert_eq!(
        ours.per_choice, theirs,
        "same tally as the Governor's proposalVotes"
    );
    assert_eq!(
        theirs,
        vec![
            250 * 10u128.pow(18),
            100 * 10u128.pow(18),
            50 * 10u128.pow(18)
        ]
    );
    assert_eq!(ours.voters, 3);
    // The quorum is the Governor's own at the snapshot (4 % of the supply), not "0".
    let snapshot: U256 = gov1
        .method::<_, U256>("proposalSnapshot", proposal_id)
        .unwrap()
        .call()
        .await
        .unwrap();
    let their_quorum: U256 = gov1
        .method::<_, U256>("quorum", snapshot)
        .unwrap()
        .call()
        .await
        .unwrap();
    assert!(!their_quorum.is_zero());
    assert_eq!(p.quorum, their_quorum.to_string());
    // Voting opened at the snapshot block (it exists: its own time); the deadline block is
    // still ahead, so its time is an estimate, and said to be one.
    let deadline: U256 = gov1
        .method::<_, U256>("proposalDeadline", proposal_id)
        .unwrap()
        .call()
        .await
        .unwrap();
    let block_time = |n: U256| {
        let provider = provider.clone();
        async move {
            let b = provider.get_block(n.as_u64()).await.unwrap().unwrap();
            chrono::DateTime::from_timestamp(b.timestamp.as_u64() as i64, 0).unwrap()
        }
    };
    let schedule = |p: &meridian_storage::entities::proposals::Model| {
        (
            p.strategy["schedule"]["start_exact"].clone(),
            p.strategy["schedule"]["end_exact"].clone(),
            p.strategy["schedule"]["clock"].clone(),
        )
    };
    assert!(provider.get_block_number().await.unwrap().as_u64() < deadline.as_u64());
    assert_eq!(p.start_at, block_time(snapshot).await);
    assert_eq!(
        schedule(&p),
        (
            serde_json::json!(true),
            serde_json::json!(false),
            serde_json::json!("block_number")
        )
    );
    assert!(p.end_at >= p.start_at);
    // Decided as the Governor decides (against is choice 0 there): for 100 < against 250.
    assert!(!ours.passed, "{ours:?}");

    // The vote period ends; for is short of against, so it is defeated on chain. A second
    // proposal passes, is queued and executed; the mirror follows.
    mine(&provider, 25).await;
    // No event says a proposal was defeated: the mirror asks the Governor.
    gov.tick(chrono::Utc::now()).await.unwrap();
    let ended = store.proposal(&id).await.unwrap().unwrap();
    assert_eq!(ended.state, "defeated");
    // The deadline block exists now: both times are the chain's own.
    assert_eq!(ended.end_at, block_time(deadline).await);
    assert_eq!(ended.start_at, block_time(snapshot).await);
    assert_eq!(
        schedule(&ended),
        (
            serde_json::json!(true),
            serde_json::json!(true),
            serde_json::json!("block_number")
        )
    );
    let description2 = "Second proposal".to_string();
    // It sends no value (the timelock holds none).
    let values2 = vec![U256::zero()];
    send(
        &gov1,
        "propose",
        (
            targets.clone(),
            values2.clone(),
            calldatas.clone(),
            description2.clone(),
        ),
    )
    .await;
    let hash2 = ethers::utils::keccak256(description2.as_bytes());
    let id2: U256 = gov1
        .method::<_, U256>(
            "hashProposal",
            (targets.clone(), values2.clone(), calldatas.clone(), hash2),
        )
        .unwrap()
        .call()
        .await
        .unwrap();
    mine(&provider, 2).await;
    for i in [1usize, 2] {
        let g = contract(art::MERIDIAN_GOVERNOR_ABI, governor, clients[i].clone());
        send(&g, "castVote", (id2, 1u8)).await;
    }
    mine(&provider, 25).await;
    send(
        &gov1,
        "queue",
        (targets.clone(), values2.clone(), calldatas.clone(), hash2),
    )
    .await;
    let _: serde_json::Value = provider
        .request("evm_increaseTime", [U256::from(5u64)])
        .await
        .unwrap();
    mine(&provider, 1).await;
    send(&gov1, "execute", (targets, values2, calldatas, hash2)).await;
    anvil::drain(&follower).await;
    gov.tick(chrono::Utc::now()).await.unwrap();
    let p2 = store
        .proposal(&mirrored_id(&chain, &id2.to_string()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p2.state, "executed");
    // The executed proposal's tally says it passed (it said not: choice 0 was read as "for").
    let t2 = gov.count(&p2).await.unwrap();
    assert!(t2.passed && t2.quorum_reached, "{t2:?}");
    assert!(p2.eta.is_some(), "the queue's eta is kept");
    // The on-chain effect happened (the timelock approved voter 1).
    let allowance: U256 = votes0
        .method::<_, U256>("allowance", (timelock, clients[1].address()))
        .unwrap()
        .call()
        .await
        .unwrap();
    assert_eq!(allowance, U256::one());

    // A proposal its proposer cancels while pending is canceled in the mirror too.
    let description3 = "Withdrawn proposal".to_string();
    let (t3, v3, c3) = (vec![token], vec![U256::zero()], vec![approve.clone()]);
    send(
        &gov1,
        "propose",
        (t3.clone(), v3.clone(), c3.clone(), description3.clone()),
    )
    .await;
    let hash3 = ethers::utils::keccak256(description3.as_bytes());
    let id3: U256 = gov1
        .method::<_, U256>("hashProposal", (t3.clone(), v3.clone(), c3.clone(), hash3))
        .unwrap()
        .call()
        .await
        .unwrap();
    send(&gov1, "cancel", (t3, v3, c3, hash3)).await;
    anvil::drain(&follower).await;
    gov.tick(chrono::Utc::now()).await.unwrap();
    let p3 = store
        .proposal(&mirrored_id(&chain, &id3.to_string()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p3.state, "canceled");

    // Token voting power off-chain: the voter's balance at the snapshot block a proposal takes
    // when it is created; later transfers do not change it.
    let cfg = meridian_types::config::GovernanceConfig {
        tokens: vec![meridian_types::config::VotingTokenConfig {
            chain: chain.clone(),
            address: format!("{token:#x}"),
            power: TokenPower::Balance,
        }],
        ..Default::default()
    };
    let governance_of = |cfg| {
        let mut providers = std::collections::HashMap::new();
        providers.insert(chain.clone(), pool(&chain, &provider));
        let routing = Arc::new(meridian_router::RoutingState::new(
            meridian_router::Router::new(&[], &[], Default::default()).unwrap(),
            Default::default(),
        ));
        Governance::new(store.clone(), routing, cfg, providers)
    };
    let token_gov = governance_of(cfg.clone());
    let strategy = token_gov.strategy_now().await.unwrap();
    let voter1 = format!("{:#x}", clients[1].address());
    assert_eq!(
        token_gov.power(&strategy, &voter1).await.unwrap(),
        100 * 10u128.pow(18)
    );
    let v1 = contract(art::MERIDIAN_VOTES_ABI, token, clients[1].clone());
    send(
        &v1,
        "transfer",
        (clients[3].address(), U256::from(60u64) * unit),
    )
    .await;
    assert_eq!(
        token_gov.power(&strategy, &voter1).await.unwrap(),
        100 * 10u128.pow(18),
        "snapshot"
    );
    let later = token_gov.strategy_now().await.unwrap();
    assert_eq!(
        token_gov.power(&later, &voter1).await.unwrap(),
        40 * 10u128.pow(18)
    );
    assert_eq!(
        token_gov
            .power(&later, &format!("{:#x}", Address::repeat_byte(7)))
            .await
            .unwrap(),
        0
    );

    // On the mirrored Governor proposal an off-chain vote counts with the DAO's own power (its
    // token here), and that is what votingPower shows — not 0.
    let mirrored: meridian_governance::Strategy =
        serde_json::from_value(store.proposal(&id).await.unwrap().unwrap().strategy).unwrap();
    let own = token_gov
        .power(&token_gov.strategy_now().await.unwrap(), &voter1)
        .await
        .unwrap();
    assert!(own > 0);
    assert_eq!(
        token_gov.off_chain_power(&mirrored, &voter1).await.unwrap(),
        own
    );

    // Delegated power (`power = "votes"`): voter 3 (110 now) delegates to voter 1 (40). Balances
    // stay; votes move to the delegate, and the deployer, who never delegated, has none.
    let v3 = contract(art::MERIDIAN_VOTES_ABI, token, clients[3].clone());
    send(&v3, "delegate", clients[1].address()).await;
    let mut votes_cfg = cfg;
    votes_cfg.tokens[0].power = TokenPower::Votes;
    let votes_gov = governance_of(votes_cfg);
    let (voter3, deployer) = (
        format!("{:#x}", clients[3].address()),
        format!("{:#x}", clients[0].address()),
    );
    let e18 = 10u128.pow(18);
    // Taken in the chain's current block (getPastVotes cannot look it up yet), then again once
    // that block is past: the same figures.
    let now_votes = votes_gov.strategy_now().await.unwrap();
    let now_balances = token_gov.strategy_now().await.unwrap();
    for round in 0..2 {
        for (who, votes, balance) in [(&voter1, 150 * e18, 40 * e18), (&voter3, 0, 110 * e18)] {
            assert_eq!(
                votes_gov.power(&now_votes, who).await.unwrap(),
                votes,
                "votes of {who}, round {round}"
            );
            assert_eq!(
                token_gov.power(&now_balances, who).await.unwrap(),
                balance,
                "balance of {who}, round {round}"
            );
        }
        assert_eq!(votes_gov.power(&now_votes, &deployer).await.unwrap(), 0);
        assert!(token_gov.power(&now_balances, &deployer).await.unwrap() > 0);
        mine(&provider, 1).await;
    }
}

/// The governance engine's view of the chain: one endpoint, through the failover pool.
fn pool(chain: &meridian_types::ChainId, provider: &Provider<Http>) -> Arc<RpcPool> {
    let url: url::Url = provider.url().clone();
    Arc::new(RpcPool::new(
        chain.clone(),
        vec![(url.clone(), Provider::new(PoliteHttp::new(url)))],
        std::time::Duration::from_secs(10),
    ))
}
