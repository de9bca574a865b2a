//! S3 and MinIO through the `minio` crate. Small files go up in one PUT carrying
//! `x-amz-checksum-sha256` (the server checks it and reports it back); large ones in parts whose
//! bodies the server checks against their signed SHA-256, with the object's SHA-256 kept as
//! `x-amz-meta-sha256`; the final ETag must be the MD5 of the parts' ETags, which proves the
//! object is exactly those parts in order. Part progress is handed to the caller after every
//! part, so a restart resumes at the next one.

use crate::{ObjectLock, Part, Progress, Result, Resume, StoreError};
use base64::Engine;
use futures_util::StreamExt;
use md5::Digest as _;
use minio::s3::builders::{PutObject, UploadPart};
use minio::s3::creds::StaticProvider;
use minio::s3::error::{Error, S3ServerError, ValidationErr};
use minio::s3::http::BaseUrl;
use minio::s3::minio_error_response::MinioErrorCode;
use minio::s3::multimap_ext::{Multimap, MultimapExt};
use minio::s3::response_traits::{HasChecksumHeaders, HasEtagFromHeaders, HasS3Fields};
use minio::s3::segmented_bytes::SegmentedBytes;
use minio::s3::types::{BucketName, ObjectKey, PartInfo, Region, S3Api, ToStream};
use minio::s3::utils::ChecksumAlgorithm;
use minio::s3::{MinioClient, MinioClientBuilder};
use std::sync::Arc;

pub(crate) struct S3Store {
    client: MinioClient,
    bucket: String,
    prefix: String,
    pub(crate) lock: Option<ObjectLock>,
    /// For the requests that carry a recording's bytes, signed here with `UNSIGNED-PAYLOAD`
    /// (the client above would hash every byte to sign it).
    base: BaseUrl,
    creds: (String, String),
    http: reqwest::Client,
}

/// The error an S3 server answered a request of ours with (`<Code>`, `<Message>`).
fn answered(status: u16, body: &str, key: &str) -> StoreError {
    let tag = |t: &str| -> String {
        let open = format!("<{t}>");
        body.find(&open)
            .and_then(|i| {
                let rest = &body[i + open.len()..];
                rest.find(&format!("</{t}>")).map(|j| rest[..j].to_owned())
            })
            .unwrap_or_default()
    };
    let (code, message) = (tag("Code"), tag("Message"));
    let msg = if code.is_empty() { format!("HTTP {status}") } else { format!("{code}: {message}") };
    match code.as_str() {
        "NoSuchBucket" => StoreError::NoBucket(msg),
        "NoSuchKey" | "NoSuchUpload" => StoreError::NotFound(msg),
        "AccessDenied" | "SignatureDoesNotMatch" | "NotSignedUp" | "InvalidAccessKeyId" | "ExpiredToken" => {
            StoreError::Denied(msg)
        }
        "BadDigest" | "InvalidDigest" | "XAmzContentChecksumMismatch" => {
            StoreError::Mismatch { key: key.to_owned(), detail: format!("refused on arrival: {msg}") }
        }
        _ if status == 403 => StoreError::Denied(msg),
        _ => StoreError::Other(msg),
    }
}

/// Sorts the crate's errors into what the operator should do.
fn classify(e: impl Into<Error>) -> StoreError {
    let e: Error = e.into();
    match &e {
        Error::S3Server(S3ServerError::S3Error(resp)) => {
            let msg = format!("{:?}: {}", resp.code(), resp.message().as_deref().unwrap_or(""));
            match resp.code() {
                MinioErrorCode::NoSuchBucket => StoreError::NoBucket(msg),
                MinioErrorCode::NoSuchKey => StoreError::NotFound(msg),
                MinioErrorCode::AccessDenied => StoreError::Denied(msg),
                MinioErrorCode::OtherError(c)
                    if matches!(
                        c.as_str(),
                        "signaturedoesnotmatch" | "notsignedup" | "invalidaccesskeyid" | "expiredtoken"
                    ) =>
                {
                    StoreError::Denied(msg)
                }
                _ => StoreError::Other(msg),
            }
        }
        Error::Validation(ValidationErr::HttpError(re)) if re.is_connect() || re.is_timeout() => {
            StoreError::Unreachable(re.to_string())
        }
        Error::Validation(ValidationErr::HttpError(re)) => StoreError::Unreachable(re.to_string()),
        _ => StoreError::Other(e.to_string()),
    }
}

/// The `ETag` of a CompleteMultipartUpload answer, without quotes.
fn etag_in(body: &str) -> Option<String> {
    let start = body.find("<ETag>")? + "<ETag>".len();
    let end = start + body[start..].find("</ETag>")?;
    Some(body[start..end].replace("&quot;", "").replace("&#34;", "").trim_matches('"').to_owned())
}

fn sha256_b64(hex_digest: &str) -> Option<String> {
    let raw = hex::decode(hex_digest).ok()?;
    Some(base64::engine::general_purpose::STANDARD.encode(raw))
}

/// The hosts and ports the client connects to for `bucket` at `endpoint`, as the client builds
/// its URLs: AWS endpoints put the bucket into the host name (virtual-host style) and answer
/// some calls on the regional host (path style); others (MinIO) use the endpoint's host.
pub(crate) fn endpoints(endpoint: &str, bucket: &str, region: Option<&str>) -> Result<Vec<(String, u16)>> {
    let base: BaseUrl =
        endpoint.parse().map_err(|e: ValidationErr| StoreError::Config(format!("endpoint {endpoint:?}: {e}")))?;
    let region = Region::new(region.unwrap_or("us-east-1")).map_err(|e| StoreError::Config(e.to_string()))?;
    let bucket = BucketName::new(bucket).map_err(|e| StoreError::Config(format!("bucket {bucket:?}: {e}")))?;
    let object = ObjectKey::new("witness").map_err(|e| StoreError::Config(e.to_string()))?;
    let mut location = Multimap::new();
    location.add("location", "");
    let urls = [
        base.build_url(&reqwest::Method::PUT, &region, &Multimap::new(), Some(&bucket), Some(&object)),
        base.build_url(&reqwest::Method::GET, &region, &location, Some(&bucket), None),
    ];
    let mut out = Vec::new();
    for url in urls {
        let url = url.map_err(|e| StoreError::Config(format!("endpoint {endpoint:?}: {e}")))?;
        let host = url.host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let port = match url.port {
            0 if url.https => 443,
            0 => 80,
            p => p,
        };
        if !out.contains(&(host.clone(), port)) {
            out.push((host, port));
        }
    }
    Ok(out)
}

impl S3Store {
    pub(crate) fn new(
        endpoint: &str,
        bucket: &str,
        region: Option<&str>,
        prefix: &str,
        (ak, sk): (&str, &str),
        lock: Option<ObjectLock>,
    ) -> Result<Self> {
        let mut base: BaseUrl =
            endpoint.parse().map_err(|e: ValidationErr| StoreError::Config(format!("endpoint {endpoint:?}: {e}")))?;
        base.region = Region::new(region.unwrap_or("us-east-1")).map_err(|e| StoreError::Config(e.to_string()))?;
        BucketName::new(bucket).map_err(|e| StoreError::Config(format!("bucket {bucket:?}: {e}")))?;
        let http = reqwest::Client::builder().build().map_err(|e| StoreError::Config(e.to_string()))?;
        let client = MinioClientBuilder::new(base.clone())
            .provider(Some(StaticProvider::new(ak, sk, None)))
            .build()
            .map_err(|e| StoreError::Config(e.to_string()))?;
        let creds = (ak.to_owned(), sk.to_owned());
        Ok(Self { client, bucket: bucket.to_owned(), prefix: prefix.to_owned(), lock, base, creds, http })
    }

    /// A PUT of `data` as `key`, signed with `UNSIGNED-PAYLOAD`: `headers` carry the checksums
    /// computed at sealing, which the server checks against the body on arrival.
    async fn put_unsigned(
        &self,
        key: &str,
        query: Multimap,
        mut headers: Multimap,
        data: impl Into<reqwest::Body>,
    ) -> Result<reqwest::header::HeaderMap> {
        let (b, k) = self.names(key)?;
        let url = self
            .base
            .build_url(&reqwest::Method::PUT, &self.base.region, &query, Some(&b), Some(&k))
            .map_err(|e| StoreError::Config(e.to_string()))?;
        headers.add("Host", url.host_header_value());
        let date = minio::s3::utils::to_amz_date(minio::s3::utils::utc_now());
        let creds = (self.creds.0.as_str(), self.creds.1.as_str());
        let region = self.base.region.as_str().to_owned();
        crate::sigv4::sign(
            "PUT",
            &url.path,
            &query,
            &mut headers,
            &region,
            creds,
            &date,
            crate::sigv4::UNSIGNED_PAYLOAD,
        );
        let mut req = self.http.put(url.to_string());
        for (name, values) in headers.iter_all() {
            if name.eq_ignore_ascii_case("host") {
                continue; // reqwest sends the same from the URL
            }
            for v in values {
                req = req.header(name, v);
            }
        }
        let resp = req.body(data).send().await.map_err(|e| StoreError::Unreachable(e.to_string()))?;
        let status = resp.status();
        let answer = resp.headers().clone();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(answered(status.as_u16(), &body, &self.key(key)));
        }
        Ok(answer)
    }

    /// Object Lock headers for a write now: retention when configured, and the legal hold.
    fn lock_headers(&self, legal_hold: bool) -> Multimap {
        let mut h = Multimap::new();
        if let Some(lock) = self.lock {
            h.add("x-amz-object-lock-mode", lock.mode.as_str());
            h.add("x-amz-object-lock-retain-until-date", lock.retain_until(std::time::SystemTime::now()));
            if legal_hold {
                h.add("x-amz-object-lock-legal-hold", "ON");
            }
        }
        h
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn names(&self, key: &str) -> Result<(BucketName, ObjectKey)> {
        let b = BucketName::new(&self.bucket).map_err(|e| StoreError::Config(e.to_string()))?;
        let k = ObjectKey::new(self.key(key)).map_err(|e| StoreError::Config(e.to_string()))?;
        Ok((b, k))
    }

    pub(crate) async fn check(&self) -> Result<crate::KeyAccess> {
        let exists = self.client.bucket_exists(&self.bucket).map_err(classify)?.build().send().await;
        let access = match exists.map_err(classify) {
            Ok(e) if !e.exists() => {
                return Err(StoreError::NoBucket(format!("bucket {:?} does not exist", self.bucket)));
            }
            Ok(_) => crate::KeyAccess::ReadWrite,
            // A write-only key (s3:PutObject alone) may not look at the bucket: its writes will
            // say whether it works.
            Err(StoreError::Denied(m)) => {
                tracing::info!(bucket = %self.bucket, reason = %m, "the store key cannot look at the bucket (write-only); writes will tell");
                crate::KeyAccess::WriteOnly
            }
            Err(e) => return Err(e),
        };
        if self.lock.is_some() {
            // A bucket without object lock would take the objects and silently not lock them
            // (or refuse each PUT): refuse before anything is sent.
            let no_lock = |detail: String| StoreError::NoObjectLock { bucket: self.bucket.clone(), detail };
            let config = self.client.get_object_lock_config(&self.bucket).map_err(classify)?.build().send().await;
            match config.map_err(classify) {
                Ok(_) => {}
                Err(e @ (StoreError::Unreachable(_) | StoreError::Denied(_))) => return Err(e),
                Err(e) => return Err(no_lock(e.to_string())),
            }
        }
        Ok(access)
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<()> {
        let full = self.key(key);
        self.client
            .delete_object(&self.bucket, full.as_str())
            .map_err(classify)?
            .build()
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    pub(crate) async fn set_legal_hold(&self, key: &str, on: bool) -> Result<()> {
        let full = self.key(key);
        self.client
            .put_object_legal_hold(&self.bucket, full.as_str(), on)
            .map_err(classify)?
            .build()
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn put_single(
        &self,
        key: &str,
        data: bytes::Bytes,
        sha256_hex: Option<&str>,
        legal_hold: bool,
    ) -> Result<crate::Receipt> {
        let (b, k) = self.names(key)?;
        let mut meta = Multimap::new();
        if let Some(h) = sha256_hex {
            meta.add("x-amz-meta-sha256", h);
        }
        let mut headers = self.lock_headers(legal_hold);
        // What the AWS SDKs send with a checksum: some servers keep (and report back) the
        // x-amz-checksum-sha256 only when it is named here.
        headers.add("x-amz-sdk-checksum-algorithm", "SHA256");
        if self.lock.is_some() {
            // S3 refuses a locked write without Content-MD5 (or an SDK checksum header).
            headers.add("Content-MD5", base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&data)));
        }
        let resp = PutObject::builder()
            .inner(
                UploadPart::builder()
                    .client(self.client.clone())
                    .bucket(b)
                    .object(k)
                    .data(Arc::new(SegmentedBytes::from(data)))
                    .user_metadata(Some(meta))
                    .extra_headers(Some(headers))
                    .checksum_algorithm(Some(ChecksumAlgorithm::SHA256))
                    .build(),
            )
            .build()
            .send()
            .await
            .map_err(classify)?;
        Ok(crate::Receipt {
            sha256_b64: resp.get_checksum(ChecksumAlgorithm::SHA256),
            etag: resp.etag().ok().map(|e| e.as_str().trim_matches('"').to_owned()),
        })
    }

    /// A recording small enough for one PUT: its SHA-256 from sealing goes as
    /// `x-amz-checksum-sha256`, which the server checks and reports back (the receipt). Its body
    /// is read from the file a piece at a time as it is sent.
    async fn put_file_single(&self, up: &crate::FileUpload<'_>, md5: [u8; 16]) -> Result<crate::Receipt> {
        let crate::FileUpload { key, path, sha256: sha256_hex, size, legal_hold, .. } = *up;
        let checksum = sha256_b64(sha256_hex)
            .ok_or_else(|| StoreError::Other(format!("the sealed sha256 {sha256_hex:?} is not a sha256")))?;
        let mut headers = self.lock_headers(legal_hold);
        headers.add("x-amz-meta-sha256", sha256_hex);
        headers.add("x-amz-sdk-checksum-algorithm", "SHA256");
        headers.add("x-amz-checksum-sha256", checksum.as_str());
        headers.add("Content-Length", size.to_string());
        if self.lock.is_some() {
            headers.add("Content-MD5", base64::engine::general_purpose::STANDARD.encode(md5));
        }
        let body = crate::range_body(path, 0, size).await?;
        let answer = self.put_unsigned(key, Multimap::new(), headers, body).await?;
        let text = |h: &str| answer.get(h).and_then(|v| v.to_str().ok()).map(|v| v.trim_matches('"').to_owned());
        Ok(crate::Receipt { sha256_b64: text("x-amz-checksum-sha256"), etag: text("etag") })
    }

    pub(crate) async fn put_bytes(&self, key: &str, data: Vec<u8>, legal_hold: bool) -> Result<()> {
        self.put_single(key, data.into(), None, legal_hold).await.map(|_| ())
    }

    pub(crate) async fn put_file(
        &self,
        up: &crate::FileUpload<'_>,
        mut resume: Resume,
        progress: &mut dyn Progress,
    ) -> Result<crate::Receipt> {
        let crate::FileUpload { key, path, sha256, part_size, throttle, legal_hold, digests, .. } = *up;
        // The sealed length (checked against the file before): nothing past it is sent.
        let size = up.size;
        if size < part_size {
            let receipt = self.put_file_single(up, digests.md5[0]).await?;
            progress.sent(size);
            throttle.sent(size).await;
            return Ok(receipt);
        }
        let full = self.key(key);
        // A part recorded as sent whose ETag is not its digest here (sent by an attempt that
        // took other digests) is sent again.
        resume.parts.retain(|p| digests.md5.get(p.number as usize - 1).is_some_and(|d| hex::encode(d) == p.etag));
        let upload_id = match resume.upload_id.clone() {
            Some(id) => id,
            None => {
                let mut meta = Multimap::new();
                meta.add("x-amz-meta-sha256", sha256);
                let created = self
                    .client
                    .create_multipart_upload(&self.bucket, &full)
                    .map_err(classify)?
                    .user_metadata(Some(meta))
                    .extra_headers(Some(self.lock_headers(legal_hold)))
                    .build()
                    .send()
                    .await
                    .map_err(classify)?;
                let id = created.upload_id().await.map_err(classify)?.to_string();
                resume = Resume { upload_id: Some(id.clone()), parts: Vec::new() };
                progress.part_done(&resume);
                id
            }
        };
        let count = size.div_ceil(part_size) as u32;
        let todo: Vec<u32> = (1..=count).filter(|n| !resume.parts.iter().any(|p| p.number == *n)).collect();
        // Two parts in flight, each read from the file a piece at a time as it is sent.
        let mut uploads = futures_util::stream::iter(todo.into_iter().map(|number| {
            let (full, upload_id) = (full.clone(), upload_id.clone());
            async move {
                let offset = (number as u64 - 1) * part_size;
                let len = part_size.min(size - offset);
                // The part's MD5 (sealing's, or taken just now from a file found to be the sealed
                // one): the server checks the body against it, and its ETag must be that MD5, so
                // nothing is hashed as it is sent.
                let md5 = digests.md5[number as usize - 1];
                let mut query = Multimap::new();
                query.add("partNumber", number.to_string());
                query.add("uploadId", upload_id.as_str());
                let mut headers = Multimap::new();
                headers.add("Content-MD5", base64::engine::general_purpose::STANDARD.encode(md5));
                headers.add("Content-Length", len.to_string());
                // A part that arrived changed is sent again in place (a later good copy replaces
                // it), a few times, before the whole upload is given up; one that is changed on
                // the box is not sent again (the file is then hashed whole, and refused).
                let mut tries = 0;
                loop {
                    tries += 1;
                    let body = crate::range_body(path, offset, len).await?;
                    let answer = self.put_unsigned(key, query.clone(), headers.clone(), body).await?;
                    let etag = answer
                        .get("etag")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .trim_matches('"')
                        .to_owned();
                    if etag == hex::encode(md5) {
                        return Ok::<_, StoreError>(Part { number, etag, size: len });
                    }
                    let detail = format!("part {number} etag {etag:?} on arrival, expected {}", hex::encode(md5));
                    if tries >= 3 || crate::range_md5(path, offset, len).await? != md5 {
                        return Err(StoreError::Mismatch { key: full.clone(), detail });
                    }
                    tracing::warn!(key = %full, %detail, "a part arrived changed; sending it again");
                }
            }
        }))
        .buffer_unordered(2);
        let mut failed = None;
        while let Some(part) = uploads.next().await {
            let part = match part {
                Ok(part) => part,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            };
            let len = part.size;
            resume.parts.push(part);
            progress.sent(len);
            progress.part_done(&resume);
            throttle.sent(len).await;
        }
        drop(uploads);
        if let Some(e) = failed {
            if matches!(e, StoreError::Mismatch { .. }) {
                // Started over at the next attempt (a part changed on the box is refused then
                // before anything is sent): the parts are dropped now.
                self.abort(&full, &upload_id).await;
            }
            return Err(e);
        }
        resume.parts.sort_by_key(|p| p.number);
        let parts = resume
            .parts
            .iter()
            .map(|p| {
                Ok(PartInfo::new(
                    p.number as u16,
                    p.etag.parse().map_err(|e: ValidationErr| StoreError::Other(e.to_string()))?,
                    p.size,
                    None,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let done = self
            .client
            .complete_multipart_upload(&self.bucket, &full, upload_id.as_str(), parts)
            .map_err(classify)?
            .build()
            .send()
            .await
            .map_err(classify)?;
        // The completed object's ETag is in the answer's body (`<ETag>"…-N"</ETag>`).
        let body = String::from_utf8_lossy(done.body()).into_owned();
        Ok(crate::Receipt { sha256_b64: None, etag: etag_in(&body) })
    }

    /// Aborts a multipart upload (its parts dropped by the server); a failure only leaves them
    /// for the bucket's lifecycle rules.
    async fn abort(&self, full: &str, upload_id: &str) {
        let aborted = match self.client.abort_multipart_upload(&self.bucket, full, upload_id) {
            Ok(b) => b.build().send().await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = aborted {
            tracing::warn!(key = %full, error = %e, "a multipart upload could not be aborted");
        }
    }

    pub(crate) async fn verify(
        &self,
        key: &str,
        size: u64,
        sha256: &str,
        parts: &[Part],
        receipt: Option<&crate::Receipt>,
    ) -> Result<()> {
        let full = self.key(key);
        let mismatch = |detail: String| StoreError::Mismatch { key: full.clone(), detail };
        // What the server said on arrival settles it without reading anything back.
        let expected_etag = || -> Result<String> {
            let mut parts = parts.to_vec();
            parts.sort_by_key(|p| p.number);
            let mut md5s = Vec::new();
            for p in &parts {
                md5s.extend(
                    hex::decode(&p.etag).map_err(|_| mismatch(format!("part {} etag {:?}", p.number, p.etag)))?,
                );
            }
            Ok(format!("{}-{}", hex::encode(md5::Md5::digest(&md5s)), parts.len()))
        };
        match receipt {
            Some(crate::Receipt { sha256_b64: Some(got), .. }) if parts.is_empty() => {
                let expected = sha256_b64(sha256).ok_or_else(|| mismatch("no local sha256".into()))?;
                return if *got == expected {
                    Ok(())
                } else {
                    Err(mismatch(format!("sha256 {got} on arrival, expected {expected}")))
                };
            }
            Some(crate::Receipt { etag: Some(etag), .. }) if !parts.is_empty() => {
                let expected = expected_etag()?;
                return if *etag == expected {
                    Ok(())
                } else {
                    Err(mismatch(format!("etag {etag} on arrival, expected {expected}")))
                };
            }
            _ => {}
        }
        // No receipt (an upload resumed after a crash): ask the server, which needs read rights.
        self.verify_by_reading(key, size, sha256, parts).await.map_err(|e| match e {
            StoreError::Denied(m) => mismatch(format!(
                "the upload's receipt is gone and this key cannot read the object back ({m}); uploading again"
            )),
            e => e,
        })
    }

    async fn verify_by_reading(&self, key: &str, size: u64, sha256: &str, parts: &[Part]) -> Result<()> {
        let full = self.key(key);
        let mismatch = |detail: String| StoreError::Mismatch { key: full.clone(), detail };
        let mut mode = Multimap::new();
        mode.add("x-amz-checksum-mode", "ENABLED");
        let st = self
            .client
            .stat_object(&self.bucket, &full)
            .map_err(classify)?
            .extra_headers(Some(mode))
            .build()
            .send()
            .await
            .map_err(classify)?;
        let got_size = st.size().map_err(classify)?;
        if got_size != size {
            return Err(mismatch(format!("{got_size} bytes, expected {size}")));
        }
        if parts.is_empty() {
            // One PUT: the server checked x-amz-checksum-sha256 and reports what it stored.
            let expected = sha256_b64(sha256).ok_or_else(|| mismatch("no local sha256".into()))?;
            return match st.get_checksum(ChecksumAlgorithm::SHA256) {
                Some(got) if got == expected => Ok(()),
                Some(got) => Err(mismatch(format!("sha256 {got}, expected {expected}"))),
                None => Err(mismatch("the store reports no sha256 for a single-part object".into())),
            };
        }
        // Multipart: the object's ETag is the MD5 of its parts' ETags, in order.
        let mut parts = parts.to_vec();
        parts.sort_by_key(|p| p.number);
        let mut md5s = Vec::new();
        for p in &parts {
            md5s.extend(hex::decode(&p.etag).map_err(|_| mismatch(format!("part {} etag {:?}", p.number, p.etag)))?);
        }
        let expected = format!("{}-{}", hex::encode(md5::Md5::digest(&md5s)), parts.len());
        let etag = st.etag().map_err(classify)?.as_str().trim_matches('"').to_owned();
        if etag != expected {
            return Err(mismatch(format!("etag {etag}, expected {expected}")));
        }
        let meta = st.user_metadata().map_err(classify)?;
        match meta.get("sha256") {
            Some(h) if h == sha256 => Ok(()),
            other => Err(mismatch(format!("sha256 metadata {other:?}, expected {sha256}"))),
        }
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Vec<u8>> {
        let full = self.key(key);
        let resp =
            self.client.get_object(&self.bucket, &full).map_err(classify)?.build().send().await.map_err(classify)?;
        Ok(resp.into_bytes().await.map_err(classify)?.to_vec())
    }

    pub(crate) async fn get_small(&self, key: &str, max: u64) -> Result<Option<Vec<u8>>> {
        let full = self.key(key);
        let resp =
            self.client.get_object(&self.bucket, &full).map_err(classify)?.build().send().await.map_err(classify)?;
        let (mut body, size) = resp.into_boxed_stream().map_err(classify)?;
        if size > max {
            return Ok(None);
        }
        let mut out = Vec::new();
        while let Some(chunk) = body.next().await {
            out.extend_from_slice(&chunk.map_err(|e| StoreError::Unreachable(e.to_string()))?);
            if out.len() as u64 > max {
                return Ok(None);
            }
        }
        Ok(Some(out))
    }

    pub(crate) async fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let full = self.key(key);
        let resp = self
            .client
            .get_object(&self.bucket, &full)
            .map_err(classify)?
            .offset(Some(offset))
            .length(Some(len))
            .build()
            .send()
            .await
            .map_err(classify)?;
        Ok(resp.into_bytes().await.map_err(classify)?.to_vec())
    }

    pub(crate) async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let full = self.key(prefix);
        // A delimiter no key contains gives a deep listing everywhere (an empty one confuses
        // some servers).
        let mut stream = self
            .client
            .list_objects(&self.bucket)
            .map_err(classify)?
            .prefix(Some(full))
            .delimiter(Some("\u{7f}".to_string()))
            .build()
            .to_stream()
            .await;
        let mut keys = Vec::new();
        while let Some(page) = stream.next().await {
            for entry in page.map_err(classify)?.contents {
                if !entry.is_prefix {
                    keys.push(entry.name.strip_prefix(&self.prefix).unwrap_or(&entry.name).to_owned());
                }
            }
        }
        keys.sort();
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_sorted_by_what_the_operator_does() {
        let xml = |code: &str| format!("<?xml version=\"1.0\"?><Error><Code>{code}</Code><Message>m</Message></Error>");
        assert!(matches!(answered(403, &xml("AccessDenied"), "k"), StoreError::Denied(m) if m == "AccessDenied: m"));
        assert!(matches!(answered(403, "", "k"), StoreError::Denied(_)));
        assert!(matches!(answered(404, &xml("NoSuchBucket"), "k"), StoreError::NoBucket(_)));
        assert!(matches!(answered(404, &xml("NoSuchUpload"), "k"), StoreError::NotFound(_)));
        assert!(matches!(answered(400, &xml("BadDigest"), "k"), StoreError::Mismatch { .. }));
        assert!(matches!(answered(500, &xml("InternalError"), "k"), StoreError::Other(_)));
    }
}
