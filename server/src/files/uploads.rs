//! Resumable uploads, tus 1.0 (core, creation, termination, expiration) at `/v1/uploads`.
//!
//! Object stores cannot append, so each `PATCH` is stored as one part object named by its
//! starting offset (`<prefix>_uploads/<id>/<offset, 20 digits>`); the row in `_fb_uploads`
//! holds the committed offset. A `PATCH` cut off mid-way keeps the bytes that arrived (its part
//! is finished with them and the offset moves), so the client resumes exactly there. A
//! finished upload is attached by a record write whose file field value is
//! `{"upload": "<id>"}`: the parts are streamed, in order, through the same checks as a direct
//! upload into the record's file, and the upload is consumed in the record write's own
//! transaction ([`consume_in`]: a `DELETE … RETURNING` that only one write can win). A write
//! that fails (a refused rule, a validation error, a conflict) leaves the upload as it was, so
//! the client fixes its request and attaches the same upload again instead of re-sending it.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use object_store::path::Path;
use object_store::{ObjectStoreExt, WriteMultipart};

use super::{Files, storage_error};
use crate::access::Principal;
use crate::db::{ColType, Conn, Db, Param};
use crate::error::{Code, Error};

/// An upload expires this long after its creation or last `PATCH`.
pub const TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// Longest `Upload-Metadata` header.
pub const MAX_METADATA: usize = 4096;

/// One upload's state.
#[derive(Clone, Debug)]
pub struct Upload {
    pub id: String,
    pub length: u64,
    pub offset: u64,
    pub filename: String,
    /// The `Upload-Metadata` header as sent (echoed on `HEAD`).
    pub metadata: String,
    pub expires_at: DateTime<Utc>,
}

/// Who owns an upload: only its creator may see, continue, end or attach it.
pub fn owner_of(p: &Principal) -> Result<String, Error> {
    match p {
        Principal::User { id, .. } => Ok(format!("user:{id}")),
        Principal::Admin { id, .. } => Ok(format!("admin:{id}")),
        Principal::ApiKey { id, .. } => Ok(format!("key:{id}")),
        Principal::Anonymous => Err(Error::unauthenticated("Sign in to upload files.")),
    }
}

/// Parses tus `Upload-Metadata` (`key base64,key2 base64`) into (key, decoded value) pairs.
pub fn parse_metadata(raw: &str) -> Result<Vec<(String, String)>, Error> {
    use base64::Engine;
    let bad = |m: &str| {
        Error::bad_request(format!("Upload-Metadata: {m}")).with("header", "Upload-Metadata")
    };
    if raw.len() > MAX_METADATA {
        return Err(bad("too long"));
    }
    let mut out = Vec::new();
    for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut it = pair.splitn(2, ' ');
        let key = it.next().unwrap_or("");
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad("a key is empty or not printable ASCII"));
        }
        let value = match it.next().map(str::trim) {
            None | Some("") => String::new(),
            Some(v) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(v)
                    .map_err(|_| bad("a value is not base64"))?;
                String::from_utf8(bytes).map_err(|_| bad("a value is not UTF-8"))?
            }
        };
        out.push((key.to_owned(), value));
    }
    Ok(out)
}

fn part_dir(files: &Files, id: &str) -> Path {
    Path::from(format!("{}_uploads/{id}", files.prefix))
}

fn part_key(files: &Files, id: &str, offset: u64) -> Path {
    Path::from(format!("{}_uploads/{id}/{offset:020}", files.prefix))
}

const COLS: &str = "id, length, upload_offset, filename, metadata, expires_at";
const TYPES: [ColType; 6] = [
    ColType::Text,
    ColType::Int,
    ColType::Int,
    ColType::Text,
    ColType::Text,
    ColType::Time,
];

fn from_row(r: Vec<Param>) -> Upload {
    let mut it = r.into_iter();
    Upload {
        id: it.next().and_then(Param::into_string).unwrap_or_default(),
        length: it.next().and_then(|p| p.as_i64()).unwrap_or(0).max(0) as u64,
        offset: it.next().and_then(|p| p.as_i64()).unwrap_or(0).max(0) as u64,
        filename: it.next().and_then(Param::into_string).unwrap_or_default(),
        metadata: it.next().and_then(Param::into_string).unwrap_or_default(),
        expires_at: it.next().and_then(|p| p.as_time()).unwrap_or_else(Utc::now),
    }
}

fn not_found() -> Error {
    Error::not_found("No such upload (it may have expired).")
}

/// Creates an upload of `length` bytes for `owner`.
pub async fn create(
    db: &Db,
    owner: String,
    length: u64,
    filename: String,
    metadata: String,
) -> Result<Upload, Error> {
    let id = uuid::Uuid::now_v7().simple().to_string();
    let now = Utc::now();
    let expires_at = now + chrono::Duration::from_std(TTL).unwrap_or_default();
    let up = Upload {
        id: id.clone(),
        length,
        offset: 0,
        filename: filename.clone(),
        metadata: metadata.clone(),
        expires_at,
    };
    db.write_one(move |mut c| {
        Box::pin(async move {
            c.execute(
                "INSERT INTO _fb_uploads (id, owner, length, upload_offset, filename, metadata, created_at, expires_at) VALUES ($1, $2, $3, 0, $4, $5, $6, $7)",
                &[
                    Param::Text(id),
                    Param::Text(owner),
                    Param::Int(i64::try_from(length).unwrap_or(i64::MAX)),
                    Param::Text(filename),
                    Param::Text(metadata),
                    Param::Time(now),
                    Param::Time(expires_at),
                ],
            )
            .await?;
            Ok::<_, Error>(())
        })
    })
    .await?;
    Ok(up)
}

/// The upload `id` of `owner` (404 for anyone else, and once expired).
pub async fn get(db: &Db, owner: &str, id: &str) -> Result<Upload, Error> {
    let (owner, id) = (owner.to_owned(), id.to_owned());
    let row = db
        .read_by_key(move |mut c| {
            Box::pin(async move {
                c.fetch_one(
                    &format!("SELECT {COLS} FROM _fb_uploads WHERE id = $1 AND owner = $2 AND expires_at > $3"),
                    &[Param::Text(id), Param::Text(owner), Param::Time(Utc::now())],
                    &TYPES,
                )
                .await
            })
        })
        .await?;
    row.map(from_row).ok_or_else(not_found)
}

/// Appends `body` at `offset` (which must be the upload's offset: 409 otherwise). Bytes that
/// arrived before the body broke off are kept. Returns the new offset.
pub async fn append<S, E>(
    db: &Db,
    files: &Files,
    owner: &str,
    id: &str,
    offset: u64,
    mut body: S,
) -> Result<Upload, Error>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    let up = get(db, owner, id).await?;
    if offset != up.offset {
        return Err(Error::new(
            Code::Conflict,
            format!(
                "Upload-Offset is {offset} but the upload is at {}.",
                up.offset
            ),
        )
        .with("upload_offset", up.offset));
    }
    let room = up.length - up.offset;
    let key = part_key(files, id, offset);
    let mut w = WriteMultipart::new_with_chunk_size(
        files
            .store
            .put_multipart(&key)
            .await
            .map_err(storage_error)?,
        super::CHUNK,
    );
    let mut got: u64 = 0;
    let mut over = false;
    while let Some(chunk) = body.next().await {
        // A broken connection ends the body: keep what arrived.
        let Ok(chunk) = chunk else { break };
        if got + chunk.len() as u64 > room {
            over = true;
            break;
        }
        got += chunk.len() as u64;
        if w.wait_for_capacity(2).await.is_err() {
            break;
        }
        w.put(chunk);
    }
    if over || got == 0 {
        let _ = w.abort().await;
        if over {
            return Err(Error::new(
                Code::PayloadTooLarge,
                format!(
                    "The upload is {} bytes; this PATCH goes past its end.",
                    up.length
                ),
            ));
        }
        return Ok(up);
    }
    w.finish().await.map_err(storage_error)?;
    let new_offset = offset + got;
    let expires_at = Utc::now() + chrono::Duration::from_std(TTL).unwrap_or_default();
    let (id2, owner2) = (id.to_owned(), owner.to_owned());
    let moved = db
        .write_one(move |mut c| {
            Box::pin(async move {
                c.execute(
                    "UPDATE _fb_uploads SET upload_offset = $1, expires_at = $2 WHERE id = $3 AND owner = $4 AND upload_offset = $5",
                    &[
                        Param::Int(i64::try_from(new_offset).unwrap_or(i64::MAX)),
                        Param::Time(expires_at),
                        Param::Text(id2),
                        Param::Text(owner2),
                        Param::Int(i64::try_from(offset).unwrap_or(i64::MAX)),
                    ],
                )
                .await
                .map_err(Error::from)
            })
        })
        .await?;
    if moved == 0 {
        // A concurrent PATCH at the same offset won: this part is not part of the upload.
        let _ = files.store.delete(&key).await;
        return Err(Error::new(
            Code::Conflict,
            "Another PATCH moved the upload first.",
        ));
    }
    Ok(Upload {
        offset: new_offset,
        expires_at,
        ..up
    })
}

/// Ends an upload and removes its bytes: its row is taken away from the table by one
/// `DELETE … RETURNING`, so of two concurrent terminations (or a termination racing an attach,
/// see [`consume_in`]) only one wins.
pub async fn terminate(db: &Db, files: &Files, owner: &str, id: &str) -> Result<(), Error> {
    let (owner, id) = (owner.to_owned(), id.to_owned());
    let row = db
        .write_one(move |mut c| {
            Box::pin(async move {
                c.fetch_one(
                    &format!("DELETE FROM _fb_uploads WHERE id = $1 AND owner = $2 AND expires_at > $3 RETURNING {COLS}"),
                    &[Param::Text(id), Param::Text(owner), Param::Time(Utc::now())],
                    &TYPES,
                )
                .await
                .map_err(Error::from)
            })
        })
        .await?;
    let ended = row.map(from_row).ok_or_else(not_found)?;
    remove_parts(files, &ended.id).await
}

async fn remove_parts(files: &Files, id: &str) -> Result<(), Error> {
    let dir = part_dir(files, id);
    // A part cut off by a crash left a staging file that no listing shows.
    files
        .remove_staged(&dir, None, std::time::Duration::ZERO)
        .await?;
    let mut list = files.store.list(Some(&dir));
    while let Some(meta) = list.next().await {
        let meta = meta.map_err(storage_error)?;
        match files.store.delete(&meta.location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(storage_error(e)),
        }
    }
    Ok(())
}

/// Reads a finished upload: its bytes as one stream (parts in offset order) and its file
/// name. The caller streams it into a record's file, consumes it with [`consume_in`] in the
/// record write's transaction, and calls [`discard`] once that committed.
pub async fn take(
    db: &Db,
    files: &Files,
    owner: &str,
    id: &str,
) -> Result<
    (
        Upload,
        impl Stream<Item = Result<Bytes, object_store::Error>> + Unpin + use<>,
    ),
    Error,
> {
    // Finished uploads only: an unfinished one is refused with the reason.
    let current = get(db, owner, id).await?;
    if current.offset != current.length {
        return Err(Error::field(
            "upload",
            format!(
                "upload `{id}` is not finished ({} of {} bytes)",
                current.offset, current.length
            ),
        ));
    }
    let up = current;
    let mut parts: Vec<Path> = Vec::new();
    let mut list = files.store.list(Some(&part_dir(files, &up.id)));
    while let Some(meta) = list.next().await {
        parts.push(meta.map_err(storage_error)?.location);
    }
    parts.sort_by(|a, b| a.as_ref().cmp(b.as_ref()));
    let store = files.store.clone();
    let stream = futures::stream::iter(parts)
        .then(move |p| {
            let store = store.clone();
            async move { store.get(&p).await.map(|r| r.into_stream()) }
        })
        .map(|r| match r {
            Ok(s) => s.boxed(),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        })
        .flatten()
        .boxed();
    Ok((up, stream))
}

/// Consumes the finished uploads `ids` of `owner` inside a record write's transaction: if
/// another write attached one of them first (or it expired and was pruned meanwhile), this
/// write fails with 409 and its own copies of the files are discarded by the caller.
pub async fn consume_in(c: &mut Conn<'_>, owner: &str, ids: &[String]) -> Result<(), Error> {
    for id in ids {
        let row = c
            .fetch_one(
                "DELETE FROM _fb_uploads WHERE id = $1 AND owner = $2 AND upload_offset = length RETURNING id",
                &[Param::Text(id.clone()), Param::Text(owner.to_owned())],
                &[ColType::Text],
            )
            .await
            .map_err(Error::from)?;
        if row.is_none() {
            return Err(Error::conflict(format!(
                "upload `{id}` was attached by another write (or expired) meanwhile"
            ))
            .with("field", "upload"));
        }
    }
    Ok(())
}

/// Removes a consumed upload's parts.
pub async fn discard(files: &Files, id: &str) {
    if let Err(e) = remove_parts(files, id).await {
        tracing::warn!(error = %e.detail, upload = id, "could not remove upload parts");
    }
}

/// Removes expired uploads (rows and parts), a few at a time.
pub async fn prune(db: &Db, files: &Files) -> Result<u64, Error> {
    let rows = db
        .write_one(|mut c| {
            Box::pin(async move {
                c.fetch(
                    "DELETE FROM _fb_uploads WHERE id IN (SELECT id FROM _fb_uploads WHERE expires_at <= $1 LIMIT 100) RETURNING id",
                    &[Param::Time(Utc::now())],
                    &[ColType::Text],
                )
                .await
                .map_err(Error::from)
            })
        })
        .await?;
    for r in &rows {
        if let Some(id) = r.first().and_then(Param::as_str) {
            discard(files, id).await;
        }
    }
    Ok(rows.len() as u64)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn metadata() {
        let m = parse_metadata("filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential")
            .unwrap();
        assert_eq!(
            m[0],
            ("filename".into(), "world_domination_plan.pdf".into())
        );
        assert_eq!(m[1], ("is_confidential".into(), String::new()));
        assert!(parse_metadata("filename !!!").is_err());
        assert!(parse_metadata(&"a ".repeat(3000)).is_err());
        assert!(parse_metadata("").unwrap().is_empty());
    }

    proptest! {
        #[test]
        fn metadata_never_panics(s in ".{0,200}") {
            let _ = parse_metadata(&s);
        }
    }
}
