//! S3 objects: `s3://bucket/prefix` URLs, get/put/list, the filter-pruned listing of the
//! published layout, and [`S3Input`], the streaming [`InputSource`] the worker reads with.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use tokio::sync::mpsc;

use super::aws::describe;
use crate::logs::{parse_key, sanitize, Allowed, Filter};
use crate::store::{InputFile, InputSource, ListOutcome};

/// Objects at least this big are uploaded in parts.
pub const MULTIPART_THRESHOLD: usize = 32 << 20;
/// Size of each part (S3's minimum is 5 MiB, except the last).
pub const PART_BYTES: usize = 16 << 20;
/// Listing requests in flight at once.
const LIST_CONCURRENCY: usize = 16;
/// Chunks of a streaming GET buffered ahead of the decompressor (each is what the HTTP
/// layer hands over, typically 8-64 KiB): bounded, so a slow mapper holds back the network.
const READ_AHEAD_CHUNKS: usize = 64;
/// Times a broken GET stream is resumed (a ranged GET from where it broke).
const RESUME_ATTEMPTS: u32 = 3;

/// `s3://bucket/prefix`: a bucket and a key prefix that is empty or ends with `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    pub bucket: String,
    pub prefix: String,
}

impl S3Url {
    pub fn parse(text: &str) -> anyhow::Result<S3Url> {
        let Some(rest) = text.strip_prefix("s3://") else {
            bail!("`{text}` is not an s3:// URL (expected s3://bucket/prefix)");
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            bail!("`{text}` names no bucket (expected s3://bucket/prefix)");
        }
        Ok(S3Url {
            bucket: bucket.to_string(),
            prefix: normalize_prefix(prefix),
        })
    }

    /// The full key of `relative` under this prefix.
    pub fn key(&self, relative: &str) -> String {
        format!("{}{relative}", self.prefix)
    }

    /// The URL of `relative` under this prefix.
    pub fn join(&self, relative: &str) -> S3Url {
        S3Url {
            bucket: self.bucket.clone(),
            prefix: normalize_prefix(&self.key(relative)),
        }
    }
}

impl fmt::Display for S3Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

fn normalize_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("{trimmed}/")
    }
}

/// Reads a whole object; `Ok(None)` if it does not exist.
pub async fn get_optional(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> anyhow::Result<Option<Vec<u8>>> {
    match s3.get_object().bucket(bucket).key(key).send().await {
        Ok(output) => {
            let body = output
                .body
                .collect()
                .await
                .map_err(|e| anyhow!("reading s3://{bucket}/{key}: {}", describe(&e)))?;
            Ok(Some(body.into_bytes().to_vec()))
        }
        Err(e) => {
            let service = e.as_service_error();
            if service.is_some_and(|s| s.is_no_such_key()) || status_of(&e) == Some(404) {
                Ok(None)
            } else {
                Err(anyhow!("GET s3://{bucket}/{key}: {}", describe(&e)))
            }
        }
    }
}

/// Reads a whole object that must exist.
pub async fn get(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> anyhow::Result<Vec<u8>> {
    get_optional(s3, bucket, key)
        .await?
        .ok_or_else(|| anyhow!("s3://{bucket}/{key} does not exist"))
}

/// Whether an object exists.
pub async fn exists(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> anyhow::Result<bool> {
    match s3.head_object().bucket(bucket).key(key).send().await {
        Ok(_) => Ok(true),
        Err(e) => {
            if e.as_service_error().is_some_and(|s| s.is_not_found()) || status_of(&e) == Some(404)
            {
                Ok(false)
            } else {
                Err(anyhow!("HEAD s3://{bucket}/{key}: {}", describe(&e)))
            }
        }
    }
}

fn status_of<E, R: HasStatus>(error: &aws_sdk_s3::error::SdkError<E, R>) -> Option<u16> {
    error.raw_response().map(|r| r.status_code())
}

/// What an SDK raw response tells about its HTTP status.
pub trait HasStatus {
    fn status_code(&self) -> u16;
}

impl HasStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

/// Writes an object in one PUT (atomic: readers see the old or the new bytes), or in parts
/// when it is large (also atomic: the object appears at `CompleteMultipartUpload`).
pub async fn put(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    data: Vec<u8>,
    content_type: Option<&str>,
) -> anyhow::Result<()> {
    put_with_threshold(s3, bucket, key, data, content_type, MULTIPART_THRESHOLD).await
}

/// [`put`] with a chosen multipart threshold (tests use a small one).
pub async fn put_with_threshold(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    data: Vec<u8>,
    content_type: Option<&str>,
    threshold: usize,
) -> anyhow::Result<()> {
    if data.len() >= threshold.max(PART_BYTES.min(5 << 20)) {
        return put_multipart(s3, bucket, key, Bytes::from(data), content_type).await;
    }
    let mut request = s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(data));
    if let Some(t) = content_type {
        request = request.content_type(t);
    }
    request
        .send()
        .await
        .map_err(|e| anyhow!("PUT s3://{bucket}/{key}: {}", describe(&e)))?;
    Ok(())
}

async fn put_multipart(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    data: Bytes,
    content_type: Option<&str>,
) -> anyhow::Result<()> {
    let mut create = s3.create_multipart_upload().bucket(bucket).key(key);
    if let Some(t) = content_type {
        create = create.content_type(t);
    }
    let upload = create.send().await.map_err(|e| {
        anyhow!(
            "starting a multipart upload of s3://{bucket}/{key}: {}",
            describe(&e)
        )
    })?;
    let upload_id = upload
        .upload_id()
        .ok_or_else(|| anyhow!("multipart upload of s3://{bucket}/{key}: no upload id"))?
        .to_string();
    let result = async {
        let mut parts = Vec::new();
        for (index, start) in (0..data.len()).step_by(PART_BYTES).enumerate() {
            let number = index as i32 + 1;
            let chunk = data.slice(start..(start + PART_BYTES).min(data.len()));
            let part = s3
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(&upload_id)
                .part_number(number)
                .body(ByteStream::from(chunk))
                .send()
                .await
                .map_err(|e| anyhow!("part {number} of s3://{bucket}/{key}: {}", describe(&e)))?;
            parts.push(
                CompletedPart::builder()
                    .set_e_tag(part.e_tag().map(str::to_string))
                    .part_number(number)
                    .build(),
            );
        }
        s3.complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| anyhow!("completing s3://{bucket}/{key}: {}", describe(&e)))?;
        Ok::<(), anyhow::Error>(())
    }
    .await;
    if result.is_err() {
        // Best effort; a bucket lifecycle rule aborts what a killed process leaves behind.
        let _ = s3
            .abort_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(&upload_id)
            .send()
            .await;
    }
    result
}

pub async fn delete(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> anyhow::Result<()> {
    s3.delete_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| anyhow!("DELETE s3://{bucket}/{key}: {}", describe(&e)))?;
    Ok(())
}

/// One listed object.
#[derive(Debug, Clone)]
pub struct Listed {
    pub key: String,
    pub size: u64,
    /// Seconds since the epoch.
    pub modified: Option<f64>,
}

/// Lists every object under `prefix` (no delimiter).
pub async fn list_all(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> anyhow::Result<Vec<Listed>> {
    Ok(list_level(s3, bucket, prefix, None).await?.1)
}

/// Lists one level: (common prefixes, objects). `delimiter` None lists everything below.
async fn list_level(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    delimiter: Option<char>,
) -> anyhow::Result<(Vec<String>, Vec<Listed>)> {
    let mut prefixes = Vec::new();
    let mut objects = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut request = s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token.take());
        if let Some(d) = delimiter {
            request = request.delimiter(d.to_string());
        }
        let page = request
            .send()
            .await
            .map_err(|e| anyhow!("listing s3://{bucket}/{prefix}: {}", describe(&e)))?;
        for p in page.common_prefixes() {
            if let Some(p) = p.prefix() {
                prefixes.push(p.to_string());
            }
        }
        for o in page.contents() {
            if let Some(key) = o.key() {
                objects.push(Listed {
                    key: key.to_string(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                    modified: o
                        .last_modified()
                        .map(|t| t.secs() as f64 + f64::from(t.subsec_nanos()) / 1e9),
                });
            }
        }
        match page.next_continuation_token() {
            Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_string()),
            _ => break,
        }
    }
    Ok((prefixes, objects))
}

/// Lists the logs under `root` that `filter` selects, pruning as it goes: levels 0-3 are
/// `/` folders listed with a delimiter, one level at a time, and a folder the filter
/// rejects is never listed; levels 4-5 (buildId, submission date) are `.`-separated parts
/// of the file name and are pruned the same way when the filter constrains them.
/// Keys that do not follow the layout are returned in `ignored` with the reason.
pub async fn list_inputs(
    s3: &aws_sdk_s3::Client,
    root: &S3Url,
    filter: &Filter,
) -> anyhow::Result<ListOutcome> {
    let levels = filter.levels();
    let prune_file_name = !matches!(levels[4], Allowed::Any) || !matches!(levels[5], Allowed::Any);
    let mut outcome = ListOutcome::default();
    let mut pending: VecDeque<(usize, String)> = VecDeque::from([(0, root.prefix.clone())]);
    let mut running = tokio::task::JoinSet::new();
    loop {
        while running.len() < LIST_CONCURRENCY {
            let Some((level, prefix)) = pending.pop_front() else {
                break;
            };
            let s3 = s3.clone();
            let bucket = root.bucket.clone();
            // Levels 0-3 split on `/`; 4 and 5 on `.` when pruning the file name; the
            // last level lists everything below.
            let delimiter = match level {
                0..=3 => Some('/'),
                4 | 5 if prune_file_name => Some('.'),
                _ => None,
            };
            running.spawn(async move {
                let listed = list_level(&s3, &bucket, &prefix, delimiter).await;
                (level, prefix, listed)
            });
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let (level, prefix, listed) = joined.context("a listing task panicked")?;
        let (prefixes, objects) = listed?;
        for sub in prefixes {
            let name = sub[prefix.len()..].trim_end_matches(['/', '.']);
            if !filter.allows(level, name) && !filter.allows(level, &sanitize(name)) {
                continue;
            }
            if level < 4 && sanitize(name) != name {
                outcome.ignored.push((
                    PathBuf::from(format!("s3://{}/{sub}", root.bucket)),
                    format!(
                        "folder name is not a sanitised dimension value (expected `{}`)",
                        sanitize(name)
                    ),
                ));
                continue;
            }
            pending.push_back((level + 1, sub));
        }
        for object in objects {
            let relative = &object.key[root.prefix.len()..];
            let path = PathBuf::from(format!("s3://{}/{}", root.bucket, object.key));
            if relative.ends_with('/') {
                continue; // a folder marker
            }
            match parse_key(relative) {
                Err(e) => outcome.ignored.push((path, e.problem)),
                Ok(dimensions) if filter.matches(&dimensions) => outcome.files.push(InputFile {
                    key: relative.to_string(),
                    path,
                    size: object.size,
                    dimensions,
                }),
                Ok(_) => {}
            }
        }
    }
    outcome.files.sort_by(|a, b| a.key.cmp(&b.key));
    outcome.ignored.sort();
    Ok(outcome)
}

/// Reads task inputs from a bucket: each `open` starts a streaming GET whose body feeds the
/// decompressor through a bounded channel; nothing is staged on disk. Called from the
/// worker's task threads (never from the runtime's own threads).
///
/// Failures to open or read an object are also kept in `errors`: the task's report counts
/// them as file errors (as a corrupt local file would be), but for the fleet a missing or
/// unreadable object must fail the task, not silently shrink the result.
pub struct S3Input {
    runtime: tokio::runtime::Handle,
    s3: aws_sdk_s3::Client,
    root: S3Url,
    errors: Arc<Mutex<Vec<String>>>,
}

impl S3Input {
    pub fn new(runtime: tokio::runtime::Handle, s3: aws_sdk_s3::Client, root: S3Url) -> Self {
        S3Input {
            runtime,
            s3,
            root,
            errors: Arc::default(),
        }
    }

    /// The I/O errors seen so far (missing objects, broken streams), one line each.
    pub fn errors(&self) -> Vec<String> {
        self.errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl InputSource for S3Input {
    fn open(&self, file: &InputFile) -> io::Result<Box<dyn Read + Send>> {
        let key = self.root.key(&file.key);
        let bucket = self.root.bucket.clone();
        let s3 = self.s3.clone();
        let url = format!("s3://{bucket}/{key}");
        let first = self
            .runtime
            .block_on(async { s3.get_object().bucket(&bucket).key(&key).send().await });
        let output = match first {
            Ok(output) => output,
            Err(e) => {
                let missing = e.as_service_error().is_some_and(|s| s.is_no_such_key())
                    || status_of(&e) == Some(404);
                let error = if missing {
                    io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("{url}: the object does not exist (deleted after submit?)"),
                    )
                } else {
                    io::Error::other(format!("{url}: GET failed: {}", describe(&e)))
                };
                self.record(&error);
                return Err(error);
            }
        };
        let etag = output.e_tag().map(str::to_string);
        let (sender, receiver) = mpsc::channel::<io::Result<Bytes>>(READ_AHEAD_CHUNKS);
        let errors = Arc::clone(&self.errors);
        self.runtime.spawn(async move {
            let mut body = output.body;
            let mut offset: u64 = 0;
            let mut resumes = 0;
            loop {
                match body.try_next().await {
                    Ok(Some(chunk)) => {
                        offset += chunk.len() as u64;
                        if sender.send(Ok(chunk)).await.is_err() {
                            return; // the reader is gone
                        }
                    }
                    Ok(None) => return,
                    Err(e) if resumes < RESUME_ATTEMPTS => {
                        resumes += 1;
                        tracing::warn!("{url}: stream broke at byte {offset} ({e}); resuming");
                        let mut request = s3
                            .get_object()
                            .bucket(&bucket)
                            .key(&key)
                            .range(format!("bytes={offset}-"));
                        if let Some(tag) = &etag {
                            request = request.if_match(tag);
                        }
                        match request.send().await {
                            Ok(rest) => body = rest.body,
                            Err(e) => {
                                let error = io::Error::other(format!(
                                    "{url}: resuming at byte {offset} failed: {}",
                                    describe(&e)
                                ));
                                note(&errors, &error);
                                let _ = sender.send(Err(error)).await;
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        let error = io::Error::other(format!(
                            "{url}: reading failed at byte {offset}: {}",
                            describe(&e)
                        ));
                        note(&errors, &error);
                        let _ = sender.send(Err(error)).await;
                        return;
                    }
                }
            }
        });
        Ok(Box::new(ChannelReader {
            receiver,
            current: Bytes::new(),
        }))
    }
}

impl S3Input {
    fn record(&self, error: &io::Error) {
        note(&self.errors, error);
    }
}

fn note(errors: &Mutex<Vec<String>>, error: &io::Error) {
    errors
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(error.to_string());
}

/// The blocking end of a streaming GET.
struct ChannelReader {
    receiver: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.receiver.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

/// Creates a bucket if it does not exist yet (tests and local setups).
pub async fn ensure_bucket(s3: &aws_sdk_s3::Client, bucket: &str) -> anyhow::Result<()> {
    if s3.head_bucket().bucket(bucket).send().await.is_ok() {
        return Ok(());
    }
    s3.create_bucket()
        .bucket(bucket)
        .send()
        .await
        .map_err(|e| anyhow!("creating bucket {bucket}: {}", describe(&e)))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_join() {
        let url = S3Url::parse("s3://data/published/").unwrap();
        assert_eq!(url.bucket, "data");
        assert_eq!(url.prefix, "published/");
        assert_eq!(url.key("a/b"), "published/a/b");
        assert_eq!(S3Url::parse("s3://data").unwrap().prefix, "");
        assert_eq!(S3Url::parse("s3://data/x//y/").unwrap().prefix, "x//y/");
        assert_eq!(
            url.join("jobs/j1").to_string(),
            "s3://data/published/jobs/j1/"
        );
        assert!(S3Url::parse("data/x").is_err());
        assert!(S3Url::parse("s3:///x").is_err());
    }
}
