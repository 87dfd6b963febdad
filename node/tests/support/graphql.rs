//! Test support: GraphQL over a plain HTTP/1.1 connection to a running node.

use std::io::{Read, Write};
use std::time::Duration;

use serde_json::{json, Value};

/// POSTs `query` with `variables` to `addr`'s `/graphql` and returns the JSON answer (blocking).
pub fn graphql_blocking(addr: &str, query: &str, variables: Value) -> Value {
    let body = json!({ "query": query, "variables": variables }).to_string();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST /graphql HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    serde_json::from_str(resp.split("\r\n\r\n").nth(1).unwrap_or("null")).unwrap_or_default()
}

/// [`graphql_blocking`] off the async runtime.
pub async fn graphql(addr: String, query: String) -> Value {
    tokio::task::spawn_blocking(move || graphql_blocking(&addr, &query, json!({})))
        .await
        .unwrap()
}
