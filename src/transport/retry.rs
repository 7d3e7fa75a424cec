//! What an answer means: one small policy turns an HTTP status (or a failed request) into a
//! [`Verdict`], so every HTTP-speaking sink, the cloud auth clients and the Falco forwarder
//! classify the same way, and each says only where it differs (an SCC finding that already
//! exists, 409, counts as delivered; a refused OAuth token, 401, is worth another try).
//!
//! The standard rules: 2xx is delivered; 408, 429 and 5xx are passing failures, retried after
//! the receiver's `Retry-After` when it sent one (delay-seconds or an HTTP date); every other
//! status is a refusal for good. A request that never got an answer (connection refused, reset,
//! timed out) is retried; one that could not even be built is refused.

use std::time::Duration;

/// What an answer means for the exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The receiver has the data.
    Delivered,
    /// A passing failure: try again later.
    Retry,
    /// Refused for good: trying again cannot help.
    Refuse,
}

/// A failed exchange: what happened, whether another try can help, and the HTTP status when
/// the receiver answered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TransportError {
    /// What failed, prefixed with who was talking (`pubsub`, `falco http://...`).
    pub message: String,
    /// True for a passing failure, false for a refusal.
    pub retry: bool,
    /// The delay the receiver asked for (`Retry-After`), on retryable failures.
    pub retry_after: Option<Duration>,
    /// The HTTP status of the answer, when there was one.
    pub status: Option<u16>,
}

impl TransportError {
    /// A passing failure without a requested delay.
    pub fn retryable(message: impl Into<String>) -> Self {
        TransportError {
            message: message.into(),
            retry: true,
            retry_after: None,
            status: None,
        }
    }

    /// A failure that retrying cannot fix (a bad certificate file, a refused request).
    pub fn refused(message: impl Into<String>) -> Self {
        TransportError {
            retry: false,
            ..TransportError::retryable(message)
        }
    }

    /// A request that got no answer: refused when it could not be built, retryable otherwise.
    pub fn request(what: &str, e: reqwest::Error) -> Self {
        let message = format!("{what}: {e}");
        if e.is_builder() {
            TransportError::refused(message)
        } else {
            TransportError::retryable(message)
        }
    }
}

/// The most characters of a response body quoted in an error message.
const SNIPPET: usize = 300;

/// The start of a response body, for error messages.
pub fn snippet(body: &str) -> String {
    body.chars().take(SNIPPET).collect()
}

/// The most statuses one policy overrides.
const MAX_OVERRIDES: usize = 4;

/// One status judged differently from the standard rules, with an optional note for the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Override {
    status: u16,
    verdict: Verdict,
    note: Option<&'static str>,
}

/// The standard classification plus a caller's overrides. Built in `const` context, so each
/// caller declares its policy once:
/// `const POLICY: RetryPolicy = RetryPolicy::STANDARD.on(409, Verdict::Delivered);`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    overrides: [Option<Override>; MAX_OVERRIDES],
    retry_refusals: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::STANDARD
    }
}

impl RetryPolicy {
    /// The standard rules, without overrides.
    pub const STANDARD: RetryPolicy = RetryPolicy {
        overrides: [None; MAX_OVERRIDES],
        retry_refusals: false,
    };

    /// Judges `status` as `verdict` whatever the standard rules say.
    pub const fn on(self, status: u16, verdict: Verdict) -> Self {
        self.push(Override {
            status,
            verdict,
            note: None,
        })
    }

    /// Like [`RetryPolicy::on`], and says `note` in the message (`topic not found (HTTP 404)`).
    pub const fn on_with(self, status: u16, verdict: Verdict, note: &'static str) -> Self {
        self.push(Override {
            status,
            verdict,
            note: Some(note),
        })
    }

    /// Retries every status the standard rules would refuse (a token service refusing a grant
    /// is more often passing than final).
    pub const fn retry_refusals(mut self) -> Self {
        self.retry_refusals = true;
        self
    }

    const fn push(mut self, o: Override) -> Self {
        let mut i = 0;
        while i < MAX_OVERRIDES {
            if self.overrides[i].is_none() {
                self.overrides[i] = Some(o);
                return self;
            }
            i += 1;
        }
        // Policies are built in `const` items, so this fails the build, never a running process.
        panic!("a retry policy overrides at most 4 statuses");
    }

    fn judge(&self, status: u16) -> (Verdict, Option<&'static str>) {
        if let Some(o) = self.overrides.iter().flatten().find(|o| o.status == status) {
            return (o.verdict, o.note);
        }
        let verdict = match status {
            200..=299 => Verdict::Delivered,
            408 | 429 | 500..=599 => Verdict::Retry,
            _ if self.retry_refusals => Verdict::Retry,
            _ => Verdict::Refuse,
        };
        (verdict, None)
    }

    /// The verdict on an HTTP status.
    pub fn verdict(&self, status: u16) -> Verdict {
        self.judge(status).0
    }

    /// Judges an answer: the response itself when delivered, otherwise an error quoting the
    /// status and the start of the body, `Retry-After` included on a retry.
    pub async fn check(
        &self,
        what: &str,
        resp: reqwest::Response,
    ) -> Result<reqwest::Response, TransportError> {
        let status = resp.status();
        let (verdict, note) = self.judge(status.as_u16());
        if verdict == Verdict::Delivered {
            return Ok(resp);
        }
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let body = snippet(&resp.text().await.unwrap_or_default());
        let message = match note {
            Some(n) => format!("{what}: {n} (HTTP {}): {body}", status.as_u16()),
            None => format!("{what}: HTTP {status}: {body}"),
        };
        let retry = verdict == Verdict::Retry;
        Err(TransportError {
            message,
            retry,
            retry_after: retry.then_some(retry_after).flatten(),
            status: Some(status.as_u16()),
        })
    }

    /// Sends `req` and judges the answer ([`RetryPolicy::check`]); `what` prefixes messages.
    pub async fn send(
        &self,
        what: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, TransportError> {
        let resp = req
            .send()
            .await
            .map_err(|e| TransportError::request(what, e))?;
        self.check(what, resp).await
    }
}

/// `Retry-After` as delay-seconds or an HTTP date (a date in the past is no delay).
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    // Some APIs (Discord) send fractional seconds.
    if let Ok(secs) = v.parse::<f64>()
        && secs.is_finite()
        && secs >= 0.0
    {
        return Some(Duration::from_secs_f64(secs.min(86_400.0)));
    }
    let t = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let d = t.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(d.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after("0.25"), Some(Duration::from_millis(250)));
    }

    #[test]
    fn standard_rules_and_overrides() {
        for (s, v) in [
            (200, Verdict::Delivered),
            (204, Verdict::Delivered),
            (400, Verdict::Refuse),
            (404, Verdict::Refuse),
            (408, Verdict::Retry),
            (409, Verdict::Refuse),
            (429, Verdict::Retry),
            (503, Verdict::Retry),
        ] {
            assert_eq!(RetryPolicy::STANDARD.verdict(s), v, "{s}");
        }
        const P: RetryPolicy = RetryPolicy::STANDARD.on(409, Verdict::Delivered).on_with(
            404,
            Verdict::Retry,
            "not there yet",
        );
        assert_eq!(P.verdict(409), Verdict::Delivered);
        assert_eq!(P.verdict(404), Verdict::Retry);
        assert_eq!(P.verdict(400), Verdict::Refuse);
        let tokens = RetryPolicy::STANDARD.retry_refusals();
        assert_eq!(tokens.verdict(400), Verdict::Retry);
        assert_eq!(tokens.verdict(200), Verdict::Delivered);
    }
}
