//! AWS Signature Version 4 for the requests that carry a recording's bytes, signed with
//! `UNSIGNED-PAYLOAD`: the body's integrity rides on checksums computed once at sealing
//! (`x-amz-checksum-sha256`, `Content-MD5`), which the server checks on arrival, instead of a
//! SHA-256 of every byte computed again just to sign the request.

use hmac::{Hmac, Mac};
use minio::s3::multimap_ext::{Multimap, MultimapExt};
use sha2::{Digest, Sha256};

pub(crate) const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("hmac takes any key length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// Adds `x-amz-date`, `x-amz-content-sha256` and `Authorization` to `headers` (which must
/// already hold `host` and everything else to sign). `amz_date` is `YYYYMMDDTHHMMSSZ`; `path`
/// is the request's path as sent (already URI-encoded).
#[allow(clippy::too_many_arguments)]
pub(crate) fn sign(
    method: &str,
    path: &str,
    query: &Multimap,
    headers: &mut Multimap,
    region: &str,
    (access_key, secret_key): (&str, &str),
    amz_date: &str,
    payload_sha256: &str,
) {
    headers.add("x-amz-date", amz_date);
    headers.add("x-amz-content-sha256", payload_sha256);
    let (signed, canonical) = headers.get_canonical_headers();
    let request =
        format!("{method}\n{path}\n{}\n{canonical}\n\n{signed}\n{payload_sha256}", query.get_canonical_query_string());
    let day = &amz_date[..amz_date.len().min(8)];
    let scope = format!("{day}/{region}/s3/aws4_request");
    let to_sign = format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", hex::encode(Sha256::digest(request)));
    let mut key = hmac(format!("AWS4{secret_key}").as_bytes(), day.as_bytes());
    for part in [region.as_bytes(), b"s3", b"aws4_request"] {
        key = hmac(&key, part);
    }
    let signature = hex::encode(hmac(&key, to_sign.as_bytes()));
    headers.add(
        "Authorization",
        format!("AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={signed}, Signature={signature}"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of AWS's "Signature Calculations for the Authorization Header"
    /// (GET object with a range), which any S3 server recomputes the same way.
    #[test]
    fn matches_the_aws_worked_example() {
        let mut h = Multimap::new();
        h.add("Host", "examplebucket.s3.amazonaws.com");
        h.add("Range", "bytes=0-9");
        sign(
            "GET",
            "/test.txt",
            &Multimap::new(),
            &mut h,
            "us-east-1",
            ("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
            "20130524T000000Z",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        );
        let auth = h.get("Authorization").unwrap();
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn a_changed_header_changes_the_signature() {
        let go = |sum: &str| {
            let mut h = Multimap::new();
            h.add("Host", "h");
            h.add("x-amz-checksum-sha256", sum);
            sign(
                "PUT",
                "/b/k",
                &Multimap::new(),
                &mut h,
                "us-east-1",
                ("a", "s"),
                "20260101T000000Z",
                UNSIGNED_PAYLOAD,
            );
            h.get("Authorization").unwrap().clone()
        };
        assert_ne!(go("AAAA"), go("AAAB"));
    }
}
