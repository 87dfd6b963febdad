//! Error codes clients can branch on (`extensions.code`).

use async_graphql::ErrorExtensions;

/// Machine-readable error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Input failed validation (bad id, bad filter).
    BadInput,
    /// A pagination cursor this node did not issue.
    BadCursor,
    /// `first`/`last` beyond the page-size limit.
    PageSizeExceeded,
    /// An operator mutation without a valid API key.
    Unauthorized,
    /// The transfer, corridor or other subject does not exist.
    NotFound,
    /// No corridor path can carry the transfer (`extensions.reasons` says why, per corridor).
    NoRoute,
    /// The database failed; details are in the node's log, not in the response.
    Internal,
}

impl ErrorCode {
    /// The code string.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadInput => "BAD_INPUT",
            ErrorCode::BadCursor => "BAD_CURSOR",
            ErrorCode::PageSizeExceeded => "PAGE_SIZE_EXCEEDED",
            ErrorCode::NoRoute => "NO_ROUTE",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::Internal => "INTERNAL",
        }
    }

    /// An error carrying this code.
    pub fn error(self, message: impl Into<String>) -> async_graphql::Error {
        let code = self.as_str();
        async_graphql::Error::new(message).extend_with(|_, e| e.set("code", code))
    }
}

/// Storage failures are logged in full and reported to clients without internals.
pub(crate) fn storage_error(e: meridian_storage::StorageError) -> async_graphql::Error {
    match e {
        meridian_storage::StorageError::InvalidCursor => {
            ErrorCode::BadCursor.error("invalid cursor")
        }
        other => {
            tracing::error!(error = %other, "storage error while serving GraphQL");
            ErrorCode::Internal.error("internal error; see the node's log")
        }
    }
}
