//! The GraphiQL page and its assets, served by the node itself (pinned versions, no CDN): it
//! works on an offline operator network, and the browser that holds an API key runs only code
//! shipped with the node. Off unless `graphql.graphiql` is set (the devnet sets it).

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;

/// The GraphiQL release the assets come from (see `assets/graphiql/PROVENANCE.md`).
pub const GRAPHIQL_VERSION: &str = "3.9.0";

/// Where the assets are served; the version is in the path, so they can be cached for good.
const ASSETS: &str = "/graphiql/3.9.0";

/// `(file name, content type, bytes)` of each asset.
const FILES: [(&str, &str, &[u8]); 4] = [
    (
        "graphiql.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/graphiql/graphiql.min.js"),
    ),
    (
        "graphiql.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/graphiql/graphiql.min.css"),
    ),
    (
        "react.production.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/graphiql/react.production.min.js"),
    ),
    (
        "react-dom.production.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/graphiql/react-dom.production.min.js"),
    ),
];

/// The page: GraphiQL on `/graphql`, subscriptions on `/graphql/ws` of the same host.
fn page() -> String {
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Meridian GraphiQL</title>
<link rel="stylesheet" href="{ASSETS}/graphiql.min.css">
<style>body {{ margin: 0; }} #graphiql {{ height: 100vh; }}</style>
</head>
<body>
<div id="graphiql">Loading GraphiQL…</div>
<script src="{ASSETS}/react.production.min.js"></script>
<script src="{ASSETS}/react-dom.production.min.js"></script>
<script src="{ASSETS}/graphiql.min.js"></script>
<script>
const ws = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/graphql/ws";
const fetcher = GraphiQL.createFetcher({{ url: "/graphql", subscriptionUrl: ws }});
ReactDOM.createRoot(document.getElementById("graphiql"))
  .render(React.createElement(GraphiQL, {{ fetcher }}));
</script>
</body>
</html>
"#
    )
}

/// `GET /` with the page and `GET /graphiql/<version>/<file>` with its assets.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut router = Router::new().route("/", get(|| async { Html(page()) }));
    for (name, content_type, bytes) in FILES {
        router = router.route(
            &format!("{ASSETS}/{name}"),
            get(move || async move {
                (
                    [
                        (CONTENT_TYPE, content_type),
                        (CACHE_CONTROL, "public, max-age=31536000, immutable"),
                    ],
                    bytes,
                )
                    .into_response()
            }),
        );
    }
    router
}

/// The page alone (for `GET /graphql` from a browser).
pub(crate) async fn graphiql_page() -> Html<String> {
    Html(page())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_what_the_node_serves() {
        let html = page();
        assert!(
            !html.contains("https://") && !html.contains("http://"),
            "{html}"
        );
        for (name, _, bytes) in FILES {
            assert!(
                html.contains(&format!("{ASSETS}/{name}")),
                "{name} not on the page"
            );
            assert!(bytes.len() > 1_000, "{name} is empty");
        }
        assert!(ASSETS.ends_with(GRAPHIQL_VERSION));
    }
}
