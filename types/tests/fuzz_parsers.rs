//! Fuzz targets for the parsers of text that comes from chains or from an operator's file
//! (issue 16, item 8): the remittance memo, the payout marker, CAIP ids and the configuration.
//! Each asserts no panic and a typed error for what does not parse; a memo that parses renders
//! back to the same memo.
//!
//! A few hundred cases under plain `cargo test`; `scripts/fuzz` runs them far longer
//! (`PROPTEST_CASES`); failures are recorded in `tests/fuzz_parsers.proptest-regressions`.

use meridian_types::config::Config;
use meridian_types::{AccountId, AssetId, ChainId, PayoutMarker, RemittanceMemo};
use proptest::prelude::*;

/// Memo-like text: the tag, then fields that are often almost right.
fn memo_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,80}",
        "meridian:v1( (to|asset|deadline|x)=[a-zA-Z0-9:/._-]{0,60}){0,5}",
        "meridian:v1 to=eip155:[0-9]{1,4}:0x[0-9a-f]{40} asset=eip155:[0-9]{1,4}/erc20:0x[0-9a-f]{40}( deadline=[0-9-]{0,25})?",
    ]
}

/// A valid configuration to mutate (each case changes one line or inserts one).
const CONFIG: &str = r#"
[node]
listen = "127.0.0.1:9000"

[graphql]
page_size_max = 100

[[chains]]
id = "eip155:31337"
name = "devnet-a"
rpc_urls = ["http://127.0.0.1:18545"]
finality = { confirmations = 2 }
contracts = [{ address = "0x5FbDB2315678afecb367f032d93F642f64180aa3", kind = "bridge_escrow" }]

[[assets]]
id = "eip155:31337/erc20:0x5fbdb2315678afecb367f032d93f642f64180aa3"
symbol = "USDM"
decimals = 6
kind = "stablecoin"

[[corridors]]
id = "self"
source_asset = "eip155:31337/erc20:0x5fbdb2315678afecb367f032d93f642f64180aa3"
dest_asset = "eip155:31337/erc20:0x5fbdb2315678afecb367f032d93f642f64180aa3"
max_amount = "1000000000"
"#;

fn config_text() -> impl Strategy<Value = String> {
    let lines: Vec<&'static str> = CONFIG.lines().collect();
    let n = lines.len();
    (
        0..n,
        prop_oneof![
            "\\PC{0,60}",
            "[a-z_]{1,20} = (\"[^\"]{0,30}\"|-?[0-9]{1,30}|true|\\[\\]|\\{ [a-z]+ = [0-9]+ \\})",
        ],
        any::<bool>(),
    )
        .prop_map(move |(at, line, replace)| {
            let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
            if replace {
                out[at] = line;
            } else {
                out.insert(at, line);
            }
            out.join("\n")
        })
}

proptest! {
    #[test]
    fn any_memo_parses_or_is_refused_and_parsed_ones_round_trip(text in memo_text()) {
        if let Ok(memo) = text.parse::<RemittanceMemo>() {
            prop_assert_eq!(memo.render().parse::<RemittanceMemo>(), Ok(memo));
        }
    }

    #[test]
    fn any_payout_marker_text_is_safe(text in "(meridian:(payout|refund|release) )?\\PC{0,60}") {
        if let Some(marker) = PayoutMarker::parse(&text) {
            prop_assert_eq!(PayoutMarker::parse(&marker.render()), Some(marker));
        }
    }

    #[test]
    fn any_caip_id_parses_or_is_refused(text in "[a-z0-9:/._-]{0,80}|\\PC{0,40}") {
        let _ = text.parse::<ChainId>();
        let _ = text.parse::<AssetId>();
        let _ = text.parse::<AccountId>();
    }

    #[test]
    fn any_config_loads_or_names_what_is_wrong(text in config_text()) {
        match Config::from_toml_str(&text, "fuzz", Vec::new()) {
            Ok(_) => {}
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}
