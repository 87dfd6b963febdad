//! A limit on aliases per request. Complexity counts fields, but aliases let one request ask for
//! the same expensive field hundreds of times under different names (1 000 aliases were answered
//! before this limit), so they are counted on their own, right after parsing and before
//! validation or any resolver runs. Fragments count where they are defined.

use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{ServerError, ServerResult, Variables};

/// The message of the error a request with too many aliases gets; the HTTP layer maps it to
/// the code `ALIAS_LIMIT_EXCEEDED`.
pub(crate) const TOO_MANY_ALIASES: &str = "too many aliases";

/// Refuses documents with more than `max` aliased fields.
pub(crate) struct AliasLimit {
    pub(crate) max: usize,
}

impl ExtensionFactory for AliasLimit {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(AliasLimitExtension { max: self.max })
    }
}

struct AliasLimitExtension {
    max: usize,
}

#[async_graphql::async_trait::async_trait]
impl Extension for AliasLimitExtension {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let aliases = aliases_in(&document);
        if aliases > self.max {
            tracing::debug!(aliases, max = self.max, "GraphQL request refused");
            return Err(ServerError::new(
                format!("{TOO_MANY_ALIASES}: {aliases}, at most {}", self.max),
                None,
            ));
        }
        Ok(document)
    }
}

/// Aliased fields in every operation and fragment definition of `document`.
fn aliases_in(document: &ExecutableDocument) -> usize {
    let operations: usize = document
        .operations
        .iter()
        .map(|(_, op)| aliases_of(&op.node.selection_set.node))
        .sum();
    let fragments: usize = document
        .fragments
        .values()
        .map(|f| aliases_of(&f.node.selection_set.node))
        .sum();
    operations + fragments
}

/// Aliased fields in `set`, nested ones included. The parser bounds nesting (recursion limit),
/// so walking it recursively cannot overflow the stack.
fn aliases_of(set: &SelectionSet) -> usize {
    set.items
        .iter()
        .map(|item| match &item.node {
            Selection::Field(f) => {
                usize::from(f.node.alias.is_some()) + aliases_of(&f.node.selection_set.node)
            }
            Selection::InlineFragment(f) => aliases_of(&f.node.selection_set.node),
            Selection::FragmentSpread(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(query: &str) -> usize {
        aliases_in(&async_graphql::parser::parse_query(query).expect("query parses"))
    }

    #[test]
    fn counts_aliases_in_operations_fragments_and_nesting() {
        assert_eq!(count("{ a: chains { id } b: chains { x: id } }"), 3);
        assert_eq!(count("{ chains { id } }"), 0);
        assert_eq!(
            count("query { ...F ... on Query { c: chains { id } } } fragment F on Query { d: chains { id } }"),
            2
        );
    }
}
