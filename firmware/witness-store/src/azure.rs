//! Azure Blob through a container SAS URL, the way Azure Bastion stores its recordings. Small
//! files: one Put Blob with Content-MD5 (the service checks it). Large ones: Put Block per part,
//! each with Content-MD5, then Put Block List; the committed block list is then compared with
//! what was sent, and the object's SHA-256 kept as `x-ms-meta-sha256`. Uncommitted blocks
//! survive a restart on the service side, so recorded parts are not sent again. The SAS
//! token never leaves this module: every error is built without the URL.

use crate::{Part, Progress, Result, Resume, StoreError};
use base64::Engine;
use md5::Digest as _;
use reqwest::{Method, StatusCode};

const API_VERSION: &str = "2021-08-06";
/// Marks a resumable block upload in [`Resume::upload_id`] (Azure has no upload id).
const BLOCKS: &str = "azure-blocks";

pub(crate) struct AzureStore {
    http: reqwest::Client,
    /// `https://account.blob.core.windows.net/container`, no query.
    container: String,
    /// The SAS query string, without `?`.
    sas: String,
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn block_id(number: u32) -> String {
    b64(format!("witness-block-{number:06}").as_bytes())
}

/// Percent-encodes a key for a URL path (slashes kept).
fn encode_path(key: &str) -> String {
    let mut out = String::new();
    for b in key.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn encode_query(v: &str) -> String {
    encode_path(v).replace('/', "%2F")
}

fn net_error(e: reqwest::Error) -> StoreError {
    StoreError::Unreachable(e.without_url().to_string())
}

/// The host and port the client connects to for a container SAS URL (no secret in either).
pub(crate) fn endpoint(sas_url: &str) -> Result<(String, u16)> {
    let base = sas_url.split_once('?').map_or(sas_url, |(base, _)| base);
    let url = reqwest::Url::parse(base).map_err(|e| StoreError::Config(format!("the SAS URL is not a URL: {e}")))?;
    let host = url.host_str().ok_or_else(|| StoreError::Config("the SAS URL has no host".into()))?;
    let port = url.port_or_known_default().ok_or_else(|| StoreError::Config("the SAS URL has no port".into()))?;
    Ok((host.trim_start_matches('[').trim_end_matches(']').to_owned(), port))
}

impl AzureStore {
    pub(crate) fn new(sas_url: &str) -> Result<Self> {
        let (base, query) = sas_url
            .split_once('?')
            .ok_or_else(|| StoreError::Config("the SAS URL has no token (nothing after '?')".into()))?;
        if !query.contains("sig=") {
            return Err(StoreError::Config("the SAS URL has no signature (sig=)".into()));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| StoreError::Config(e.without_url().to_string()))?;
        Ok(Self { http, container: base.trim_end_matches('/').to_owned(), sas: query.to_owned() })
    }

    fn url(&self, key: &str, extra: &str) -> String {
        let sep = if extra.is_empty() { "" } else { "&" };
        format!("{}/{}?{}{sep}{extra}", self.container, encode_path(key), self.sas)
    }

    async fn send(&self, req: reqwest::RequestBuilder, what: &str) -> Result<reqwest::Response> {
        let resp = req.header("x-ms-version", API_VERSION).send().await.map_err(net_error)?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let code = resp.headers().get("x-ms-error-code").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let msg = format!("{what}: {} {code}", status.as_u16());
        Err(match (status, code.as_str()) {
            (_, "ContainerNotFound") => StoreError::NoBucket(msg),
            (StatusCode::NOT_FOUND, _) => StoreError::NotFound(msg),
            (StatusCode::FORBIDDEN, _) | (StatusCode::UNAUTHORIZED, _) => StoreError::Denied(msg),
            (_, "InvalidBlockList" | "Md5Mismatch") => StoreError::Mismatch { key: what.to_owned(), detail: msg },
            (s, _) if s.is_server_error() => StoreError::Unreachable(msg),
            _ => StoreError::Other(msg),
        })
    }

    pub(crate) async fn check(&self) -> Result<crate::KeyAccess> {
        // A HEAD on a blob that need not exist: needs only read permission, tells a missing
        // container from a refused token.
        match self.send(self.http.head(self.url(".witness-probe", "")), "checking the container").await {
            Ok(_) | Err(StoreError::NotFound(_)) => Ok(crate::KeyAccess::ReadWrite),
            // A SAS with create and write only (the recorder's least privilege) may not read:
            // its writes will tell whether it works.
            Err(StoreError::Denied(m)) if m.contains("AuthorizationPermissionMismatch") => {
                tracing::info!(reason = %m, "the SAS cannot read (write-only); writes will tell");
                Ok(crate::KeyAccess::WriteOnly)
            }
            Err(e) => Err(e),
        }
    }

    /// A small object (a manifest) in one Put Blob: the service checks its Content-MD5 on
    /// arrival.
    pub(crate) async fn put_bytes(&self, key: &str, data: Vec<u8>) -> Result<()> {
        let md5 = b64(&md5::Md5::digest(&data));
        let req = self
            .http
            .put(self.url(key, ""))
            .header("x-ms-blob-type", "BlockBlob")
            .header("Content-MD5", md5)
            .body(data);
        self.send(req, "put blob").await.map(|_| ())
    }

    pub(crate) async fn put_file(
        &self,
        up: &crate::FileUpload<'_>,
        mut resume: Resume,
        progress: &mut dyn Progress,
    ) -> Result<crate::Receipt> {
        // Legal holds are S3 Object Lock only; on Azure the box's own hold keeps the blob.
        let crate::FileUpload { key, path, sha256, part_size, throttle, digests, legal_hold: _, .. } = *up;
        // The sealed length (checked against the file before): nothing past it is sent.
        let size = up.size;
        // The MD5s at this part size (sealing's, or taken just now from a file found to be the
        // sealed one): the service checks each body against its MD5, and the bodies are read
        // from the file a piece at a time as they are sent, never a part whole.
        if size < part_size {
            let req = self
                .http
                .put(self.url(key, ""))
                .header("x-ms-blob-type", "BlockBlob")
                .header("Content-MD5", b64(&digests.md5[0]))
                .header("Content-Length", size.to_string())
                .header("x-ms-meta-sha256", sha256)
                .body(crate::range_body(path, 0, size).await?);
            let resp = self.send(req, "put blob").await?;
            progress.sent(size);
            throttle.sent(size).await;
            return Ok(receipt(&resp));
        }
        if resume.upload_id.as_deref() != Some(BLOCKS) {
            resume = Resume { upload_id: Some(BLOCKS.into()), parts: Vec::new() };
        }
        // A block recorded as sent whose MD5 is not its digest here (sent by an attempt that took
        // other digests) is sent again.
        resume.parts.retain(|p| digests.md5.get(p.number as usize - 1).is_some_and(|d| hex::encode(d) == p.etag));
        let count = size.div_ceil(part_size) as u32;
        for number in 1..=count {
            if resume.parts.iter().any(|p| p.number == number) {
                continue;
            }
            let offset = (number as u64 - 1) * part_size;
            let len = part_size.min(size - offset);
            let extra = format!("comp=block&blockid={}", encode_query(&block_id(number)));
            let md5 = digests.md5[number as usize - 1];
            let req = self
                .http
                .put(self.url(key, &extra))
                .header("Content-MD5", b64(&md5))
                .header("Content-Length", len.to_string())
                .body(crate::range_body(path, offset, len).await?);
            self.send(req, "put block").await?;
            resume.parts.push(Part { number, etag: hex::encode(md5), size: len });
            progress.sent(len);
            progress.part_done(&resume);
            throttle.sent(len).await;
        }
        resume.parts.sort_by_key(|p| p.number);
        let mut xml = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
        for p in &resume.parts {
            xml.push_str(&format!("<Latest>{}</Latest>", block_id(p.number)));
        }
        xml.push_str("</BlockList>");
        let req = self.http.put(self.url(key, "comp=blocklist")).header("x-ms-meta-sha256", sha256).body(xml);
        // Every block was MD5-checked on arrival and the service committed exactly this list.
        let resp = self.send(req, "put block list").await?;
        Ok(receipt(&resp))
    }

    pub(crate) async fn verify(
        &self,
        key: &str,
        size: u64,
        sha256: &str,
        parts: &[Part],
        receipt: Option<&crate::Receipt>,
    ) -> Result<()> {
        // The service's own checks on arrival (Content-MD5 of the blob or of each block, the
        // block list committed as sent) settle it: nothing is read back.
        if receipt.is_some_and(|r| r.etag.is_some()) {
            return Ok(());
        }
        // No receipt (an upload resumed after a crash): read, which needs the SAS's `r`.
        self.verify_by_reading(key, size, sha256, parts).await.map_err(|e| match e {
            StoreError::Denied(m) => StoreError::Mismatch {
                key: key.to_owned(),
                detail: format!(
                    "the upload's receipt is gone and this SAS cannot read the blob back ({m}); uploading again"
                ),
            },
            e => e,
        })
    }

    async fn verify_by_reading(&self, key: &str, size: u64, sha256: &str, parts: &[Part]) -> Result<()> {
        let mismatch = |detail: String| StoreError::Mismatch { key: key.to_owned(), detail };
        let head = self.send(self.http.head(self.url(key, "")), "verify").await?;
        let h = head.headers();
        let got_size: u64 =
            h.get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(0);
        if got_size != size {
            return Err(mismatch(format!("{got_size} bytes, expected {size}")));
        }
        let meta = h.get("x-ms-meta-sha256").and_then(|v| v.to_str().ok()).unwrap_or("");
        if meta != sha256 {
            return Err(mismatch(format!("sha256 metadata {meta:?}, expected {sha256}")));
        }
        if parts.is_empty() {
            return Ok(()); // one Put Blob: the service checked its Content-MD5
        }
        // Blocks: each was MD5-checked on arrival; the committed list must be exactly ours.
        let list =
            self.send(self.http.get(self.url(key, "comp=blocklist&blocklisttype=committed")), "get block list").await?;
        let xml = list.text().await.map_err(net_error)?;
        let committed: Vec<(String, u64)> = xml
            .split("<Block>")
            .skip(1)
            .filter_map(|b| {
                let name = b.split("<Name>").nth(1)?.split("</Name>").next()?.to_owned();
                let size = b.split("<Size>").nth(1)?.split("</Size>").next()?.parse().ok()?;
                Some((name, size))
            })
            .collect();
        let mut expected: Vec<(u32, String, u64)> =
            parts.iter().map(|p| (p.number, block_id(p.number), p.size)).collect();
        expected.sort();
        let expected: Vec<(String, u64)> = expected.into_iter().map(|(_, id, size)| (id, size)).collect();
        if committed != expected {
            return Err(mismatch(format!(
                "{} committed blocks differ from the {} sent",
                committed.len(),
                expected.len()
            )));
        }
        Ok(())
    }

    /// Needs the SAS's `d` (delete) permission, only for retention.
    pub(crate) async fn delete(&self, key: &str) -> Result<()> {
        self.send(self.http.delete(self.url(key, "")), "delete blob").await?;
        Ok(())
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Vec<u8>> {
        let resp = self.send(self.http.request(Method::GET, self.url(key, "")), "get blob").await?;
        Ok(resp.bytes().await.map_err(net_error)?.to_vec())
    }

    pub(crate) async fn get_small(&self, key: &str, max: u64) -> Result<Option<Vec<u8>>> {
        let mut resp = self.send(self.http.request(Method::GET, self.url(key, "")), "get blob").await?;
        let mut out = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(net_error)? {
            out.extend_from_slice(&chunk);
            if out.len() as u64 > max {
                return Ok(None);
            }
        }
        Ok(Some(out))
    }

    pub(crate) async fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let last = offset + len.max(1) - 1;
        let req =
            self.http.request(Method::GET, self.url(key, "")).header("x-ms-range", format!("bytes={offset}-{last}"));
        let resp = self.send(req, "get blob range").await?;
        Ok(resp.bytes().await.map_err(net_error)?.to_vec())
    }

    pub(crate) async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut marker = String::new();
        loop {
            let mut extra = format!("restype=container&comp=list&prefix={}", encode_query(prefix));
            if !marker.is_empty() {
                extra.push_str(&format!("&marker={}", encode_query(&marker)));
            }
            let url = format!("{}?{}&{extra}", self.container, self.sas);
            let xml = self.send(self.http.get(url), "list blobs").await?.text().await.map_err(net_error)?;
            for part in xml.split("<Name>").skip(1) {
                if let Some(name) = part.split("</Name>").next() {
                    keys.push(xml_unescape(name));
                }
            }
            marker =
                xml.split("<NextMarker>").nth(1).and_then(|m| m.split("</NextMarker>").next()).unwrap_or("").to_owned();
            if marker.is_empty() {
                break;
            }
        }
        keys.sort();
        Ok(keys)
    }
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

/// The service's answer to a write that completed a blob: the success itself is the receipt (it
/// checked what it took), kept with the blob's ETag.
fn receipt(resp: &reqwest::Response) -> crate::Receipt {
    let etag = resp.headers().get("etag").and_then(|v| v.to_str().ok()).unwrap_or_default();
    crate::Receipt { sha256_b64: None, etag: Some(etag.trim_matches('"').to_owned()) }
}
