//! AWS plumbing below every AWS-speaking sink (and the sources to come): request signing
//! ([`sigv4`]) and the credential chain ([`credentials`]); [`sdk`] loads the AWS SDK's config for
//! the sinks built on the SDK (`s3`).
//!
//! Why not the AWS SDK (for now): `aws-sdk-*` plus `aws-config` add well over a hundred crates
//! (the smithy runtime, its own HTTP stack, aws-lc-rs by default) to a 2-core build, for a few
//! API calls. SigV4 over `ring` (already a dependency) is a hundred lines checked against AWS's
//! published signing test vector, and the requests go over kaudit's own HTTP client.

pub mod credentials;
pub mod sdk;
pub mod sigv4;

pub use credentials::{Credentials, CredentialsError, CredentialsProvider};

/// The text of the first `<tag>…</tag>` of an AWS XML answer, entities decoded.
pub fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&close)?;
    Some(
        xml[start..start + len]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

/// The regional endpoint of `service` (`https://sns.eu-west-1.amazonaws.com`), with China's
/// own domain for `cn-` regions.
pub fn endpoint(service: &str, region: &str) -> String {
    if region.starts_with("cn-") {
        format!("https://{service}.{region}.amazonaws.com.cn")
    } else {
        format!("https://{service}.{region}.amazonaws.com")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_and_endpoints() {
        let xml = "<Error><Code>NotFound</Code><Message>a &amp; b</Message></Error>";
        assert_eq!(xml_text(xml, "Code").as_deref(), Some("NotFound"));
        assert_eq!(xml_text(xml, "Message").as_deref(), Some("a & b"));
        assert_eq!(xml_text(xml, "Type"), None);
        assert_eq!(
            endpoint("sts", "cn-north-1"),
            "https://sts.cn-north-1.amazonaws.com.cn"
        );
        assert_eq!(
            endpoint("sns", "eu-west-1"),
            "https://sns.eu-west-1.amazonaws.com"
        );
    }
}
