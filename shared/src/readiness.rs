//! Whether the configured backends can serve, asked once when the local server starts, so a
//! misconfiguration is one line that names the problem and its fix instead of an SDK error
//! (and a stack trace) on the first request.

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// Why a backend cannot serve.
#[derive(Debug, PartialEq, Eq)]
pub enum Unready {
    /// The table (or what the backend keeps) does not exist.
    Missing,
    /// The endpoint could not be reached.
    Unreachable(String),
    /// No credentials were found.
    NoCredentials(String),
    /// The service refused the credentials.
    Denied(String),
    Other(String),
}

/// Sorts an AWS SDK error into what the operator must fix.
pub fn classify<E, R>(err: &SdkError<E, R>) -> Unready
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    // The SDK's text can run over several lines; the operator gets one.
    let text: String = DisplayErrorContext(err).to_string().split_whitespace().collect::<Vec<_>>().join(" ").chars().take(400).collect();
    let about_credentials = text.to_ascii_lowercase().contains("credential");
    match err {
        SdkError::ServiceError(service) => match service.err().code() {
            Some("ResourceNotFoundException") => Unready::Missing,
            Some(
                code @ ("UnrecognizedClientException"
                | "InvalidSignatureException"
                | "AccessDeniedException"
                | "ExpiredTokenException"
                | "InvalidClientTokenId"
                | "MissingAuthenticationToken"),
            ) => Unready::Denied(format!("{code}: {}", service.err().message().unwrap_or("no detail"))),
            _ => Unready::Other(text),
        },
        _ if about_credentials => Unready::NoCredentials(text),
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => Unready::Unreachable(text),
        _ => Unready::Other(text),
    }
}

/// The one line that says what is wrong with `what` (e.g. "the DynamoDB table tollgate") at
/// `endpoint`, and how to fix it.
pub fn explain(unready: &Unready, what: &str, endpoint: &str, endpoint_var: &str, missing_fix: &str) -> String {
    match unready {
        Unready::Missing => format!("{what} does not exist at {endpoint}: {missing_fix}"),
        Unready::Unreachable(detail) => {
            format!("cannot reach {endpoint} for {what} ({detail}): check {endpoint_var} and that the service is running")
        }
        Unready::NoCredentials(detail) => format!(
            "no AWS credentials for {what} at {endpoint} ({detail}): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE (an emulator accepts any values)"
        ),
        Unready::Denied(detail) => {
            format!("{endpoint} refused the AWS credentials for {what} ({detail}): check AWS_PROFILE / AWS_ACCESS_KEY_ID and AWS_REGION")
        }
        Unready::Other(detail) => format!("{what} at {endpoint} cannot serve: {detail}"),
    }
}
