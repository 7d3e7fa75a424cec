//! AWS Signature Version 4: the `Authorization` header of a request, and AWS's URI encoding.

use std::collections::BTreeMap;

use ring::hmac;

use crate::transport::encode::{hex, sha256_hex};

/// AWS's URI encoding: unreserved characters as they are, every other byte as `%XX`.
pub fn uri_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
        .as_ref()
        .to_vec()
}

/// What a SigV4 signature covers.
pub struct SignInput<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Canonical (already encoded) path, `/` at least.
    pub path: &'a str,
    /// Canonical query string (sorted, encoded), often empty.
    pub query: &'a str,
    /// Headers to sign, names lower-case (must include `host` and `x-amz-date`).
    pub headers: &'a BTreeMap<String, String>,
    /// Hex SHA-256 of the body.
    pub payload_hash: &'a str,
    /// Region.
    pub region: &'a str,
    /// Service name (`sns`, `sts`).
    pub service: &'a str,
    /// `x-amz-date`, `YYYYMMDDTHHMMSSZ`.
    pub amz_date: &'a str,
}

/// The `Authorization` header value of AWS Signature Version 4.
pub fn authorization(input: &SignInput<'_>, access_key_id: &str, secret: &str) -> String {
    let canonical_headers: String = input
        .headers
        .iter()
        .map(|(k, v)| format!("{k}:{}\n", v.trim()))
        .collect();
    let signed_headers = input
        .headers
        .keys()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(";");
    let canonical_request = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{}",
        input.method, input.path, input.query, input.payload_hash
    );
    let date = input.amz_date.get(..8).unwrap_or_default();
    let scope = format!("{date}/{}/{}/aws4_request", input.region, input.service);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{}\n{scope}\n{}",
        input.amz_date,
        sha256_hex(canonical_request.as_bytes())
    );
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, input.region.as_bytes());
    let k_service = hmac_sha256(&k_region, input.service.as_bytes());
    let k_signing = hmac_sha256(&k_service, b"aws4_request");
    let signature = hex(&hmac_sha256(&k_signing, string_to_sign.as_bytes()));
    format!(
        "AWS4-HMAC-SHA256 Credential={access_key_id}/{scope}, SignedHeaders={signed_headers}, Signature={signature}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's SigV4 test suite, case `get-vanilla`.
    #[test]
    fn sigv4_matches_the_aws_test_vector() {
        let mut headers = BTreeMap::new();
        headers.insert("host".to_string(), "example.amazonaws.com".to_string());
        headers.insert("x-amz-date".to_string(), "20150830T123600Z".to_string());
        let auth = authorization(
            &SignInput {
                method: "GET",
                path: "/",
                query: "",
                headers: &headers,
                payload_hash: &sha256_hex(b""),
                region: "us-east-1",
                service: "service",
                amz_date: "20150830T123600Z",
            },
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        );
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    #[test]
    fn uri_encoding() {
        assert_eq!(uri_encode("a b/c~d"), "a%20b%2Fc~d");
    }
}
