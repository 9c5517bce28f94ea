//! Files of `file` fields: object storage (local disk or S3-compatible, through object_store),
//! streamed uploads checked by magic bytes, ranged downloads, and the collector that deletes
//! objects no record references.
//!
//! Object keys are `<prefix><collection>/<record id>/<stored name>` (thumbnails under
//! `<prefix><collection>/<record id>/thumbs/`), so an operator can find and audit them.
//!
//! Crash safety: an upload first enqueues a delayed `files.collect` job naming the object it is
//! about to write, so an object left behind by a crash, a failed write or a refused rule is
//! deleted within a minute; replacing or removing a file, and deleting a record, enqueue the
//! same job in the write's own transaction. The collector deletes only names the record no
//! longer references, so running it early, late or twice is harmless.

pub mod names;
pub mod thumbs;
pub mod uploads;

use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use serde_json::{Value, json};

use crate::catalog::{CatalogHandle, CollectionInfo};
use crate::config::Settings;
use crate::db::{ColType, Conn, Db, Param};
use crate::error::{Code, Error};
use crate::jobs::{BoxFuture, JobError, JobHandler};
use ferrobase_schema::FieldType;

/// The job kind of [`Collector`].
pub const COLLECT_JOB: &str = "files.collect";
/// How long an upload's object may exist before a record references it.
pub const ORPHAN_GRACE: std::time::Duration = std::time::Duration::from_secs(60);
/// Bytes read before deciding the type (infer looks at fewer).
const SNIFF: usize = 8192;
/// Multipart chunk size (S3's minimum part size is 5 MiB): bounds memory per upload.
const CHUNK: usize = 5 * 1024 * 1024;

/// The object store and where this deployment's objects go in it.
#[derive(Clone)]
pub struct Files {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    /// For fields without their own `max_size`.
    pub default_max: u64,
    /// Thumbnail renders at once: each may hold up to ~256 MiB while decoding.
    renders: Arc<tokio::sync::Semaphore>,
    /// The directory of the local backend (`None` on S3); see [`Files::remove_staged`].
    local: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Files")
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// A file as stored.
#[derive(Clone, Debug)]
pub struct Stored {
    pub name: String,
    pub size: u64,
    pub mime: String,
}

impl Files {
    /// Opens the configured backend (the local directory is created; an S3 bucket must exist).
    pub fn open(settings: &Settings) -> anyhow::Result<Files> {
        let s = &settings.storage;
        let mut local = None;
        let store: Arc<dyn ObjectStore> = match s.backend.as_str() {
            "s3" => {
                let mut b = object_store::aws::AmazonS3Builder::new()
                    .with_bucket_name(&s.bucket)
                    .with_region(&s.region)
                    .with_allow_http(s.allow_http)
                    .with_virtual_hosted_style_request(!s.path_style);
                if !s.endpoint.is_empty() {
                    b = b.with_endpoint(&s.endpoint);
                }
                if !s.access_key_id.is_empty() {
                    b = b
                        .with_access_key_id(&s.access_key_id)
                        .with_secret_access_key(&s.secret_access_key);
                }
                Arc::new(b.build()?)
            }
            _ => {
                let dir = settings.data_dir.join("storage");
                std::fs::create_dir_all(&dir).map_err(|e| {
                    anyhow::anyhow!("cannot create storage dir {}: {e}", dir.display())
                })?;
                let store = object_store::local::LocalFileSystem::new_with_prefix(&dir)?;
                local = Some(dir);
                Arc::new(store)
            }
        };
        Ok(Files {
            store,
            prefix: s.prefix.clone(),
            default_max: settings.max_file_size,
            renders: Arc::new(tokio::sync::Semaphore::new(2)),
            local,
        })
    }

    fn key(&self, collection: &str, record: &str, name: &str) -> Path {
        Path::from(format!("{}{collection}/{record}/{name}", self.prefix))
    }

    fn thumbs_dir(&self, collection: &str, record: &str) -> Path {
        Path::from(format!("{}{collection}/{record}/thumbs", self.prefix))
    }

    /// Where the thumbnail `spec` (e.g. `200x200`) of a stored file is cached.
    pub fn thumb_key(&self, collection: &str, record: &str, name: &str, spec: &str) -> Path {
        Path::from(format!(
            "{}{collection}/{record}/thumbs/{spec}_{name}",
            self.prefix
        ))
    }

    /// Streams `body` into the object for a new file of `field`, checking its type from the
    /// first bytes and its size as it goes. Nothing stays stored when a check fails.
    /// `before_write` runs with the chosen name before any byte is written (callers enqueue the
    /// job that collects the object should no record come to reference it).
    pub async fn upload<S, E, G, F>(
        &self,
        info: &CollectionInfo,
        field: &str,
        record: &str,
        client_name: &str,
        mut body: S,
        before_write: G,
    ) -> Result<Stored, Error>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
        G: FnOnce(String) -> F,
        F: std::future::Future<Output = Result<(), Error>>,
    {
        let (max, allowed) = file_limits(info, field, self.default_max)?;
        let read_err =
            |e: E| Error::bad_request(format!("The upload was cut off: {e}")).with("field", field);
        // Sniff the type before anything is written.
        let mut head: Vec<u8> = Vec::new();
        let mut ended = false;
        while head.len() < SNIFF {
            match body.next().await {
                Some(chunk) => head.extend_from_slice(&chunk.map_err(read_err)?),
                None => {
                    ended = true;
                    break;
                }
            }
        }
        if head.is_empty() {
            return Err(Error::field(field, "the file is empty"));
        }
        let mime = names::sniff(&head);
        if !names::mime_allowed(&allowed, &mime) {
            return Err(Error::new(
                Code::UnsupportedMediaType,
                format!(
                    "`{field}` takes {}; this file is {mime}.",
                    allowed.join(", ")
                ),
            )
            .with("field", field));
        }
        let too_big = || {
            Error::new(
                Code::PayloadTooLarge,
                format!("`{field}` takes files of at most {max} bytes."),
            )
            .with("field", field)
            .with("max_size", max)
        };
        let mut size = head.len() as u64;
        if size > max {
            return Err(too_big());
        }
        let name = names::stored_name(client_name, &mime);
        before_write(name.clone()).await?;
        let key = self.key(info.name(), record, &name);
        let upload = self
            .store
            .put_multipart(&key)
            .await
            .map_err(storage_error)?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, CHUNK);
        w.put(Bytes::from(head));
        let mut failure = None;
        if !ended {
            while let Some(chunk) = body.next().await {
                let chunk = match chunk {
                    Ok(c) => c,
                    Err(e) => {
                        failure = Some(read_err(e));
                        break;
                    }
                };
                size += chunk.len() as u64;
                if size > max {
                    failure = Some(too_big());
                    break;
                }
                // At most two parts in flight: memory stays near 2 × CHUNK per upload.
                if let Err(e) = w.wait_for_capacity(2).await {
                    failure = Some(storage_error(e));
                    break;
                }
                w.put(chunk);
            }
        }
        if let Some(e) = failure {
            let _ = w.abort().await;
            return Err(e);
        }
        w.finish().await.map_err(storage_error)?;
        Ok(Stored { name, size, mime })
    }

    /// Reads a stored file (or a range of it).
    pub async fn get(
        &self,
        collection: &str,
        record: &str,
        name: &str,
        range: Option<object_store::GetRange>,
    ) -> Result<object_store::GetResult, Error> {
        self.get_key(&self.key(collection, record, name), range)
            .await
    }

    pub async fn get_key(
        &self,
        key: &Path,
        range: Option<object_store::GetRange>,
    ) -> Result<object_store::GetResult, Error> {
        let opts = object_store::GetOptions {
            range,
            ..Default::default()
        };
        self.store.get_opts(key, opts).await.map_err(|e| match e {
            object_store::Error::NotFound { .. } => Error::not_found("No such file."),
            other => storage_error(other),
        })
    }

    /// The cached thumbnail `spec` of a stored image, rendered (and cached) on first use.
    /// `None` when the original cannot be thumbnailed (not decodable, or over the decode
    /// limits): the caller serves the original.
    pub async fn thumbnail(
        &self,
        collection: &str,
        record: &str,
        name: &str,
        format: thumbs::ImageFormat,
        spec: &thumbs::ThumbSpec,
    ) -> Result<Option<Bytes>, Error> {
        let key = self.thumb_key(collection, record, name, &spec.to_string());
        match self.get_key(&key, None).await {
            Ok(found) => return found.bytes().await.map(Some).map_err(storage_error),
            Err(e) if e.code == Code::NotFound => {}
            Err(e) => return Err(e),
        }
        let original = self
            .get(collection, record, name, None)
            .await?
            .bytes()
            .await
            .map_err(storage_error)?;
        let _permit = self
            .renders
            .acquire()
            .await
            .map_err(|_| Error::new(Code::Unavailable, "The server is shutting down."))?;
        let spec2 = *spec;
        let rendered =
            tokio::task::spawn_blocking(move || thumbs::render(&original, format, &spec2))
                .await
                .map_err(Error::internal)?;
        match rendered {
            Ok(bytes) => {
                let bytes = Bytes::from(bytes);
                self.put_small(&key, bytes.clone()).await?;
                Ok(Some(bytes))
            }
            Err(e) => {
                tracing::info!(error = %e, file = name, "no thumbnail; serving the original");
                Ok(None)
            }
        }
    }

    /// Stores a small object whole (thumbnails).
    pub async fn put_small(&self, key: &Path, bytes: Bytes) -> Result<(), Error> {
        self.store
            .put(key, bytes.into())
            .await
            .map(|_| ())
            .map_err(storage_error)
    }

    /// The objects stored for a record (names relative to its folder, thumbnails as
    /// `thumbs/…`), for audits and tests.
    pub async fn list(&self, collection: &str, record: &str) -> Result<Vec<String>, Error> {
        let dir = Path::from(format!("{}{collection}/{record}", self.prefix));
        let base = format!("{dir}/");
        let mut out = Vec::new();
        let mut list = self.store.list(Some(&dir));
        while let Some(meta) = list.next().await {
            let loc = meta.map_err(storage_error)?.location.to_string();
            out.push(loc.strip_prefix(&base).unwrap_or(&loc).to_owned());
        }
        out.sort();
        Ok(out)
    }

    /// Removes what an interrupted write left in the object directory `dir`: the local
    /// backend writes an object to `<name>#<n>` and renames it once complete, so a process
    /// killed mid-upload leaves that staging file, which no listing shows and no delete of the
    /// object removes. Removes those of `name` (all when `None`) untouched for `idle`; whether
    /// a younger one remains (a write still going on). On S3 an interrupted multipart upload
    /// is the bucket's to expire (an `AbortIncompleteMultipartUpload` lifecycle rule, see
    /// docs/scaling.md): nothing to do here.
    pub async fn remove_staged(
        &self,
        dir: &Path,
        name: Option<&str>,
        idle: std::time::Duration,
    ) -> Result<bool, Error> {
        let Some(root) = &self.local else {
            return Ok(false);
        };
        let mut path = root.clone();
        for part in dir.parts() {
            path.push(part.as_ref());
        }
        let prefix = name.map(|n| format!("{n}#"));
        tokio::task::spawn_blocking(move || remove_staged_in(&path, prefix.as_deref(), idle))
            .await
            .map_err(|e| Error::internal(format!("removing staged files: {e}")))?
    }

    /// The directory of a record's objects.
    pub fn record_dir(&self, collection: &str, record: &str) -> Path {
        Path::from(format!("{}{collection}/{record}", self.prefix))
    }

    /// Deletes a stored file and its thumbnails (absent ones are fine).
    pub async fn delete(&self, collection: &str, record: &str, name: &str) -> Result<(), Error> {
        match self.store.delete(&self.key(collection, record, name)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(storage_error(e)),
        }
        let dir = self.thumbs_dir(collection, record);
        let suffix = format!("_{name}");
        let mut list = self.store.list(Some(&dir));
        while let Some(meta) = list.next().await {
            let meta = meta.map_err(storage_error)?;
            if meta
                .location
                .filename()
                .is_some_and(|f| f.ends_with(&suffix))
            {
                match self.store.delete(&meta.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(storage_error(e)),
                }
            }
        }
        Ok(())
    }
}

/// See [`Files::remove_staged`]: staging files are the entries with a `#` (stored names and
/// upload part names never hold one).
fn remove_staged_in(
    dir: &std::path::Path,
    prefix: Option<&str>,
    idle: std::time::Duration,
) -> Result<bool, Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::internal(format!("reading {}: {e}", dir.display()))),
    };
    let mut fresh = false;
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(file) = file.to_str() else { continue };
        let staged = match prefix {
            Some(p) => file.starts_with(p),
            None => file.contains('#'),
        };
        if !staged {
            continue;
        }
        let age = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .unwrap_or_default();
        if age < idle {
            fresh = true;
            continue;
        }
        match std::fs::remove_file(entry.path()) {
            Ok(()) => {
                tracing::info!(file = %entry.path().display(), "removed an interrupted upload")
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::internal(format!("removing {file}: {e}"))),
        }
    }
    Ok(fresh)
}

fn storage_error(e: object_store::Error) -> Error {
    let mut err = Error::new(Code::Unavailable, "File storage is not reachable; retry.");
    err.cause = Some(e.to_string());
    err
}

/// A file field's size limit and allowed types, or 422 when `field` is not a file field.
pub fn file_limits(
    info: &CollectionInfo,
    field: &str,
    default_max: u64,
) -> Result<(u64, Vec<String>), Error> {
    match info.column(field).and_then(|c| c.field.as_ref()) {
        Some(FieldType::File { max_size, mime, .. }) => {
            Ok((max_size.unwrap_or(default_max), mime.clone()))
        }
        _ => Err(Error::field(
            field,
            format!("`{}` has no file field `{field}`", info.name()),
        )),
    }
}

/// The file names a record's value of a file field holds.
pub fn names_in(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// The file fields of a collection.
pub fn file_fields(info: &CollectionInfo) -> Vec<&str> {
    info.columns
        .iter()
        .filter(|c| matches!(c.field, Some(FieldType::File { .. })))
        .map(|c| c.name.as_str())
        .collect()
}

/// Enqueues a collection of `names` of a record (in the caller's transaction), to run after
/// `delay`.
pub async fn collect_later(
    c: &mut Conn<'_>,
    collection: &str,
    record: &str,
    names: &[String],
    delay: std::time::Duration,
) -> Result<(), Error> {
    if names.is_empty() {
        return Ok(());
    }
    let at = chrono::Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
    crate::jobs::enqueue_at(
        c,
        COLLECT_JOB,
        &json!({"collection": collection, "record": record, "names": names}),
        at,
    )
    .await?;
    Ok(())
}

/// Runs `files.collect` jobs: deletes the named objects the record no longer references.
pub struct Collector {
    pub db: Db,
    pub catalog: CatalogHandle,
    pub files: Files,
}

impl Collector {
    async fn collect(&self, payload: &Value) -> Result<(), JobError> {
        let collection = payload["collection"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let record = payload["record"].as_str().unwrap_or_default().to_owned();
        let names = names_in(payload.get("names"));
        let catalog = self.catalog.current();
        // A collection that is gone took its references with it.
        let referenced: Vec<String> = match catalog.get(&collection) {
            None => Vec::new(),
            Some(info) => {
                let fields: Vec<String> =
                    file_fields(&info).into_iter().map(str::to_owned).collect();
                if fields.is_empty() {
                    Vec::new()
                } else {
                    let cols: Vec<String> = fields.iter().map(|f| format!("\"{f}\"")).collect();
                    let sql = format!(
                        "SELECT {} FROM \"{}\" WHERE \"id\" = $1",
                        cols.join(", "),
                        info.table
                    );
                    let types: Vec<ColType> = fields
                        .iter()
                        .filter_map(|f| info.column(f).map(|c| c.col))
                        .collect();
                    let id = record.clone();
                    let row = self
                        .db
                        .read(move |mut c| {
                            Box::pin(
                                async move { c.fetch_one(&sql, &[Param::Text(id)], &types).await },
                            )
                        })
                        .await
                        .map_err(|e: crate::db::DbError| JobError::Retry(e.to_string()))?;
                    row.map(|r| {
                        r.into_iter()
                            .flat_map(|p| names_in(Some(&crate::records::to_json(p))))
                            .collect()
                    })
                    .unwrap_or_default()
                }
            }
        };
        for name in names.iter().filter(|n| !referenced.contains(n)) {
            if !names::is_stored_name(name) {
                continue;
            }
            self.files
                .delete(&collection, &record, name)
                .await
                .map_err(|e| JobError::Retry(e.detail.clone()))?;
        }
        // An upload cut off by a crash left its staging file; one still being written (a
        // long upload) means its object may yet appear: look again later.
        let dir = self.files.record_dir(&collection, &record);
        let mut writing = false;
        for name in names.iter().filter(|n| names::is_stored_name(n)) {
            writing |= self
                .files
                .remove_staged(&dir, Some(name), ORPHAN_GRACE)
                .await
                .map_err(|e| JobError::Retry(e.detail.clone()))?;
        }
        if writing {
            return Err(JobError::Retry(
                "an upload of a collected name is still being written".into(),
            ));
        }
        Ok(())
    }
}

impl JobHandler for Collector {
    fn kind(&self) -> &'static str {
        COLLECT_JOB
    }

    fn run<'a>(&'a self, payload: &'a Value) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(self.collect(payload))
    }

    fn retain(&self, payload: &Value) -> Value {
        payload.clone()
    }
}
