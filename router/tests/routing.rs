//! Routing and screening on a small corridor graph, with every expected figure worked out by
//! hand from the inputs here (never read back from the router).

use meridian_router::compliance::ReferenceRates;
use meridian_router::compliance::DAY_SECS;
use meridian_router::route::Unused;
use meridian_router::{
    CompliancePolicy, Decision, Denylist, Rate, RollingCaps, RouteError, RouteLimits, Router,
    Screening, ScreeningReason,
};
use meridian_types::config::{Amount, AssetConfig, AssetKind, CorridorConfig};
use meridian_types::AssetId;

fn asset(chain: u64, token: &str, decimals: u8) -> AssetConfig {
    AssetConfig {
        id: format!("eip155:{chain}/erc20:{token}").parse().unwrap(),
        symbol: token.into(),
        decimals,
        kind: AssetKind::Stablecoin,
        issuer: None,
        reference_rate: None,
        reference_rate_max_age_secs: None,
    }
}

fn corridor(
    id: &str,
    from: &AssetConfig,
    to: &AssetConfig,
    fee_bps: u32,
    fixed: u128,
    rate: Option<&str>,
) -> CorridorConfig {
    CorridorConfig {
        id: id.into(),
        source_asset: from.id.clone(),
        dest_asset: to.id.clone(),
        fee_bps,
        fixed_fee: Amount(fixed),
        rate: rate.map(Into::into),
        rate_max_age_secs: 300,
        min_amount: Amount(100),
        max_amount: Amount(1_000_000_000),
        daily_cap: Amount(5_000_000_000),
        hold_threshold: Some(Amount(500_000_000)),
        paused: false,
        liquidity: Amount(0),
    }
}

/// USD on chain 1 (6 decimals), EUR on chain 2 (6), EUR on chain 3 (18 decimals).
struct Net {
    usd: AssetConfig,
    eur: AssetConfig,
    eur18: AssetConfig,
}

fn net() -> Net {
    Net {
        usd: asset(1, "0x1111111111111111111111111111111111111111", 6),
        eur: asset(2, "0x2222222222222222222222222222222222222222", 6),
        eur18: asset(3, "0x3333333333333333333333333333333333333333", 18),
    }
}

fn id(a: &AssetConfig) -> &AssetId {
    &a.id
}

#[test]
fn a_direct_corridor_is_priced_exactly() {
    let n = net();
    let r = Router::new(
        &[n.usd.clone(), n.eur.clone()],
        &[corridor("usd-eur", &n.usd, &n.eur, 25, 1_000, Some("0.92"))],
        RouteLimits::default(),
    )
    .unwrap();
    // 100 USD: fee 0.25 % = 250 000 + fixed 1 000 = 251 000; (100 000 000 − 251 000) · 0.92.
    let q = r
        .quote(id(&n.usd), id(&n.eur), 100_000_000, &Unused, 1_000)
        .unwrap();
    assert_eq!(q.hops.len(), 1);
    assert_eq!(q.hops[0].fee, 251_000);
    assert_eq!(q.amount_out, 91_769_080);
    // Ideal 92 000 000; cost (92 000 000 − 91 769 080) / 92 000 000 = 25.1 bps, rounded down.
    assert_eq!(q.cost_bps, 25);
    assert!(!q.above_cost_line);
    assert_eq!(q.expires_at, 1_060);
    assert_eq!(q.effective_rate, Rate(917_690_800_000_000_000));
}

#[test]
fn the_cheapest_path_wins_even_over_more_hops_and_decimals_are_respected() {
    let n = net();
    let corridors = [
        // Direct but dear: 4 % fee, flagged above the 3 % line.
        corridor("usd-eur18", &n.usd, &n.eur18, 400, 0, Some("0.92")),
        // Two cheap hops: 0.1 % each.
        corridor("usd-eur", &n.usd, &n.eur, 10, 0, Some("0.92")),
        corridor("eur-eur18", &n.eur, &n.eur18, 10, 0, Some("1")),
    ];
    let r = Router::new(
        &[n.usd.clone(), n.eur.clone(), n.eur18.clone()],
        &corridors,
        RouteLimits::default(),
    )
    .unwrap();
    let q = r
        .quote(id(&n.usd), id(&n.eur18), 1_000_000_000, &Unused, 0)
        .unwrap();
    let path: Vec<&str> = q.hops.iter().map(|h| h.corridor.as_str()).collect();
    assert_eq!(path, ["usd-eur", "eur-eur18"]);
    // Hop 1: fee 1 000 000, (999 000 000) · 0.92 = 919 080 000 EUR (6 decimals).
    // Hop 2: fee 919 080, 918 160 920 · 10^12 (to 18 decimals).
    assert_eq!(q.hops[0].amount_out, 919_080_000);
    assert_eq!(q.amount_out, 918_160_920 * 1_000_000_000_000);
    // The direct corridor alone costs 400 bps: above the line.
    let mut only_direct = r.clone();
    only_direct.set_paused("usd-eur", true);
    let dear = only_direct
        .quote(id(&n.usd), id(&n.eur18), 1_000_000_000, &Unused, 0)
        .unwrap();
    assert_eq!(dear.cost_bps, 400);
    assert!(dear.above_cost_line);
    // With two hops allowed at most one, only the direct corridor remains.
    let one_hop = Router::new(
        &[n.usd.clone(), n.eur.clone(), n.eur18.clone()],
        &corridors,
        RouteLimits {
            max_hops: 1,
            ..RouteLimits::default()
        },
    )
    .unwrap();
    let q = one_hop
        .quote(id(&n.usd), id(&n.eur18), 1_000_000_000, &Unused, 0)
        .unwrap();
    assert_eq!(q.hops.len(), 1);
    assert_eq!(q.hops[0].corridor, "usd-eur18");
}

#[test]
fn refusals_say_why_for_each_corridor() {
    let n = net();
    let mut paused = corridor("usd-eur-a", &n.usd, &n.eur, 0, 0, Some("1"));
    paused.paused = true;
    let fed = corridor("usd-eur-b", &n.usd, &n.eur, 0, 0, None);
    let mut r = Router::new(
        &[n.usd.clone(), n.eur.clone()],
        &[paused, fed],
        RouteLimits::default(),
    )
    .unwrap();
    let err = r
        .quote(id(&n.usd), id(&n.eur), 1_000, &Unused, 10_000)
        .unwrap_err();
    match &err {
        RouteError::NoRoute { reasons, .. } => assert_eq!(
            reasons,
            &[
                "usd-eur-a: paused".to_owned(),
                "usd-eur-b: no rate has been fed".to_owned()
            ]
        ),
        e => panic!("{e:?}"),
    }
    // A fed rate works while fresh, and is refused once older than 300 s.
    r.feed_rate("usd-eur-b", "0.5", 10_000).unwrap();
    assert_eq!(
        r.quote(id(&n.usd), id(&n.eur), 1_000, &Unused, 10_300)
            .unwrap()
            .amount_out,
        500
    );
    let stale = r
        .quote(id(&n.usd), id(&n.eur), 1_000, &Unused, 10_301)
        .unwrap_err();
    assert!(
        stale.to_string().contains("usd-eur-b: rate is 301s old"),
        "{stale}"
    );
    // Limits.
    let small = r
        .quote(id(&n.usd), id(&n.eur), 99, &Unused, 10_000)
        .unwrap_err();
    assert!(
        small.to_string().contains("below the minimum 100"),
        "{small}"
    );
    // Unknown assets and zero amounts are typed errors.
    let ghost: AssetId = "eip155:9/erc20:0x9999999999999999999999999999999999999999"
        .parse()
        .unwrap();
    assert_eq!(
        r.quote(&ghost, id(&n.eur), 1, &Unused, 0),
        Err(RouteError::UnknownAsset(ghost.clone()))
    );
    assert_eq!(
        r.quote(id(&n.usd), id(&n.eur), 0, &Unused, 0),
        Err(RouteError::ZeroAmount)
    );
    assert!(r.feed_rate("usd-eur-b", "abc", 0).is_err());
    assert!(r.feed_rate("nope", "1", 0).is_err());
    // A fixed-rate corridor takes no fed rate.
    assert!(matches!(
        r.feed_rate("usd-eur-a", "2", 0),
        Err(meridian_router::route::CorridorError::FixedRate(_))
    ));
}

#[test]
fn corridor_caps_roll_over_24_hours() {
    let n = net();
    let r = Router::new(
        &[n.usd.clone(), n.eur.clone()],
        &[corridor("usd-eur", &n.usd, &n.eur, 0, 0, Some("1"))],
        RouteLimits::default(),
    )
    .unwrap();
    let mut screening = Screening::default();
    // The cap is 5 000 000 000; use 4 500 000 000 at t = 1 000.
    screening.record(
        "eip155:1:0xaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        id(&n.usd),
        4_500_000_000,
        &[("usd-eur", 4_500_000_000)],
        1_000,
    );
    assert!(r
        .quote(id(&n.usd), id(&n.eur), 600_000_000, &screening.caps, 2_000)
        .is_err());
    assert!(r
        .quote(id(&n.usd), id(&n.eur), 500_000_000, &screening.caps, 2_000)
        .is_ok());
    // A day later the usage has left the window.
    assert!(r
        .quote(
            id(&n.usd),
            id(&n.eur),
            600_000_000,
            &screening.caps,
            1_000 + DAY_SECS
        )
        .is_ok());
}

#[test]
fn screening_refuses_sanctioned_parties_and_holds_large_or_undocumented_transfers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("denylist.txt");
    std::fs::write(
        &path,
        "# OFAC sample\n0xAbCdEf0000000000000000000000000000000001  # any chain\neip155:1:0x00000000000000000000000000000000000000B2\n",
    )
    .unwrap();
    // USD is worth 1 and the reference unit has its 6 decimals: values are its base units.
    let usd = net().usd;
    let mut reference = ReferenceRates::new(6);
    reference.set(&usd.id, Rate::from_decimal("1", 6, 6).unwrap());
    let mut s = Screening {
        denylist: Denylist::load(&path).unwrap(),
        governed: Default::default(),
        caps: RollingCaps::default(),
        policy: CompliancePolicy {
            account_daily_cap: Some(1_000),
            travel_rule_threshold: Some(500),
            reference,
        },
    };
    let alice = "eip155:1:0x000000000000000000000000000000000000a11c";
    let input = |sender, recipient, amount, data| meridian_router::compliance::ScreeningInput {
        sender,
        recipient,
        asset: &usd.id,
        amount,
        travel_rule_data: data,
        holds: &[("usd-eur", Some(800), 0)],
        now: 100,
    };
    // Bare addresses match on every chain, any case; CAIP-10 entries on their chain only.
    assert!(matches!(
        s.screen(&input(
            "eip155:5:0xabcdef0000000000000000000000000000000001",
            alice,
            10,
            false
        )),
        Decision::Reject(ScreeningReason::SanctionedSender(_))
    ));
    assert!(matches!(
        s.screen(&input(
            alice,
            "eip155:1:0x00000000000000000000000000000000000000b2",
            10,
            false
        )),
        Decision::Reject(ScreeningReason::SanctionedRecipient(_))
    ));
    assert_eq!(
        s.screen(&input(
            alice,
            "eip155:2:0x00000000000000000000000000000000000000b2",
            10,
            false
        )),
        Decision::Accept
    );
    // Travel rule above 500 without data: held; with data: accepted.
    assert_eq!(
        s.screen(&input(
            alice,
            "eip155:2:0x00000000000000000000000000000000000000b3",
            600,
            false
        )),
        Decision::Hold(ScreeningReason::TravelRuleDataMissing { threshold: 500 })
    );
    assert_eq!(
        s.screen(&input(
            alice,
            "eip155:2:0x00000000000000000000000000000000000000b3",
            600,
            true
        )),
        Decision::Accept
    );
    // Large transfer on a corridor: held with the corridor named.
    let held = s.screen(&meridian_router::compliance::ScreeningInput {
        holds: &[("usd-eur", Some(800), 900)],
        ..input(
            alice,
            "eip155:2:0x00000000000000000000000000000000000000b3",
            900,
            true,
        )
    });
    assert_eq!(
        held,
        Decision::Hold(ScreeningReason::LargeTransfer {
            corridor: "usd-eur".into(),
            threshold: 800
        })
    );
    // Rolling account cap: 700 used, 400 more would pass 1 000.
    s.record(alice, &usd.id, 700, &[], 100);
    assert_eq!(
        s.screen(&input(
            alice,
            "eip155:2:0x00000000000000000000000000000000000000b3",
            400,
            true
        )),
        Decision::Reject(ScreeningReason::AccountCapExceeded {
            used: 700,
            cap: 1_000
        })
    );

    // The file changes: the new entry applies without a restart; a broken file keeps the old list.
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&path, format!("{alice}\n")).unwrap();
    bump_mtime(&path);
    assert!(s.denylist.reload_if_changed().unwrap());
    assert!(s.denylist.contains(alice));
    assert!(!s
        .denylist
        .contains("0xabcdef0000000000000000000000000000000001"));
    std::fs::write(&path, "not an address!\n").unwrap();
    bump_mtime(&path);
    assert!(s.denylist.reload_if_changed().is_err());
    assert!(
        s.denylist.contains(alice),
        "a bad file must not lift sanctions"
    );
}

/// Limits are values in one reference unit: a 6-decimal dollar and an 18-decimal euro token
/// add up in cents, and an asset with no stated value is held, never compared in raw units.
#[test]
fn limits_compare_values_in_the_reference_unit_whatever_the_decimals() {
    let n = net();
    let mut reference = ReferenceRates::new(2);
    reference.set(&n.usd.id, Rate::from_decimal("1", 6, 2).unwrap());
    reference.set(&n.eur18.id, Rate::from_decimal("1.10", 18, 2).unwrap());
    let mut s = Screening {
        denylist: Denylist::default(),
        governed: Default::default(),
        caps: RollingCaps::default(),
        policy: CompliancePolicy {
            // 100.00 and 50.00 in the reference unit.
            account_daily_cap: Some(10_000),
            travel_rule_threshold: Some(5_000),
            reference,
        },
    };
    let alice = "eip155:1:0x000000000000000000000000000000000000a11c";
    let bob = "eip155:2:0x00000000000000000000000000000000000000b3";
    let input = |asset, amount| meridian_router::compliance::ScreeningInput {
        sender: alice,
        recipient: bob,
        asset,
        amount,
        travel_rule_data: false,
        holds: &[],
        now: 100,
    };
    let e18 = 10u128.pow(18);
    // 40 euro tokens are 44.00: under the travel-rule threshold (in raw base units, 4·10^19).
    assert_eq!(s.screen(&input(&n.eur18.id, 40 * e18)), Decision::Accept);
    // 60 are 66.00: above it.
    assert_eq!(
        s.screen(&input(&n.eur18.id, 60 * e18)),
        Decision::Hold(ScreeningReason::TravelRuleDataMissing { threshold: 5_000 })
    );
    // The cap adds both assets up in cents: 44.00 moved, then 45 dollars fit, 57 do not.
    s.record(alice, &n.eur18.id, 40 * e18, &[], 100);
    assert_eq!(s.screen(&input(&n.usd.id, 45_000_000)), Decision::Accept);
    assert_eq!(
        s.screen(&input(&n.usd.id, 57_000_000)),
        Decision::Reject(ScreeningReason::AccountCapExceeded {
            used: 4_400,
            cap: 10_000
        })
    );
    // The 6-decimal euro has no stated value: held for an operator.
    assert_eq!(
        s.screen(&input(&n.eur.id, 1)),
        Decision::Hold(ScreeningReason::NoReferenceRate {
            asset: n.eur.id.to_string()
        })
    );
}

/// A fed reference rate values transfers only while it is young: unfed or stale, a transfer the
/// limits apply to is held (naming the rate's age), never compared with an old value; a fixed
/// rate never ages; usage already accepted is counted with the latest rate, however old.
#[test]
fn a_stale_reference_rate_holds_instead_of_valuing() {
    let n = net();
    let mut reference = ReferenceRates::new(2);
    reference.set(&n.usd.id, Rate::from_decimal("1", 6, 2).unwrap());
    reference.expect_fed(&n.eur18.id, 300);
    let mut s = Screening {
        denylist: Denylist::default(),
        governed: Default::default(),
        caps: RollingCaps::default(),
        policy: CompliancePolicy {
            account_daily_cap: Some(10_000),
            travel_rule_threshold: None,
            reference,
        },
    };
    let alice = "eip155:1:0x000000000000000000000000000000000000a11c";
    let bob = "eip155:2:0x00000000000000000000000000000000000000b3";
    let input = |asset, amount, now| meridian_router::compliance::ScreeningInput {
        sender: alice,
        recipient: bob,
        asset,
        amount,
        travel_rule_data: false,
        holds: &[],
        now,
    };
    let e18 = 10u128.pow(18);
    let t0 = 1_000_000;
    // Never fed: held like an asset without a rate.
    assert_eq!(
        s.screen(&input(&n.eur18.id, e18, t0)),
        Decision::Hold(ScreeningReason::NoReferenceRate {
            asset: n.eur18.id.to_string()
        })
    );
    assert!(
        s.policy.reference.feed(&n.usd.id, Rate::ONE, t0).is_err(),
        "a fixed rate is not fed"
    );
    s.policy
        .reference
        .feed(&n.eur18.id, Rate::from_decimal("1.10", 18, 2).unwrap(), t0)
        .unwrap();
    // Fresh up to its maximum age: 100 euro tokens are 110.00, above the 100.00 cap.
    assert_eq!(
        s.screen(&input(&n.eur18.id, 50 * e18, t0 + 300)),
        Decision::Accept
    );
    assert_eq!(
        s.screen(&input(&n.eur18.id, 100 * e18, t0 + 300)),
        Decision::Reject(ScreeningReason::AccountCapExceeded {
            used: 0,
            cap: 10_000
        })
    );
    // One second older: held, naming its age; the dollar's fixed rate still values dollars.
    assert_eq!(
        s.screen(&input(&n.eur18.id, e18, t0 + 301)),
        Decision::Hold(ScreeningReason::StaleReferenceRate {
            asset: n.eur18.id.to_string(),
            age_secs: 301,
            max_age_secs: 300
        })
    );
    assert_eq!(
        s.screen(&input(&n.usd.id, 1_000_000, t0 + 10 * 86_400)),
        Decision::Accept
    );
    // Usage accepted (or released by an operator) while stale counts with the latest rate.
    s.record(alice, &n.eur18.id, 50 * e18, &[], t0 + 301);
    assert_eq!(
        s.screen(&input(&n.usd.id, 50_000_000, t0 + 302)),
        Decision::Reject(ScreeningReason::AccountCapExceeded {
            used: 5_500,
            cap: 10_000
        })
    );
    // An older observation arriving late never moves the rate back; a new one makes it fresh.
    s.policy
        .reference
        .feed(&n.eur18.id, Rate::from_decimal("2", 18, 2).unwrap(), t0 - 1)
        .unwrap();
    assert!(matches!(
        s.screen(&input(&n.eur18.id, e18, t0 + 301)),
        Decision::Hold(ScreeningReason::StaleReferenceRate { age_secs: 301, .. })
    ));
    s.policy
        .reference
        .feed(
            &n.eur18.id,
            Rate::from_decimal("1.20", 18, 2).unwrap(),
            t0 + 400,
        )
        .unwrap();
    assert_eq!(
        s.policy.reference.value_at(&n.eur18.id, e18, t0 + 400),
        Ok(120)
    );
}

/// File systems with coarse timestamps may not see two writes in one tick; move mtime on.
fn bump_mtime(path: &std::path::Path) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    let later = std::time::SystemTime::now()
        + std::time::Duration::from_secs(
            1 + std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos() as u64
                % 1000,
        );
    f.set_modified(later).unwrap();
}
