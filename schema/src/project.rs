//! The schema-as-code project folder: loading it (`plan`/`apply`) and creating it (`init`).
//!
//! ```text
//! ferrobase.toml          [project] name, [environments.<env>] server
//! collections/*.toml      one collection per file, file stem = collection name
//! flags.toml              feature flags (passed through raw for now)
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::build::Loc;
use crate::check::{MAX_COLLECTIONS, check_set};
use crate::error::SchemaError;
use crate::model::Collection;
use crate::toml_src::{line_of, parse_for_project};

/// A loaded project folder.
#[derive(Clone, Debug, PartialEq)]
pub struct Project {
    pub name: String,
    /// Environment name (`local`, `prod`, …) → where its server is.
    pub environments: BTreeMap<String, Environment>,
    /// Sorted by file name (= collection name).
    pub collections: Vec<Collection>,
    /// `flags.toml` as parsed TOML; validated by the flags module, not here.
    pub flags: Option<toml::Table>,
    /// `push.toml` (notification categories); empty when the file is absent.
    pub push: crate::push::PushProject,
    /// Every script a collection's `[triggers]` names (`triggers/posts.rhai` → its source),
    /// shipped with the collections so the server runs exactly the reviewed code.
    pub scripts: BTreeMap<String, String>,
}

/// Largest trigger script accepted.
pub const MAX_SCRIPT_BYTES: usize = 256 * 1024;

/// One deployment target of a project.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Environment {
    pub server: String,
}

/// The manifest. Unknown top-level sections are allowed: the manifest also carries
/// settings owned by other modules (auth, providers).
#[derive(Deserialize)]
struct Manifest {
    project: ManifestProject,
    #[serde(default)]
    environments: BTreeMap<String, Environment>,
}

#[derive(Deserialize)]
struct ManifestProject {
    name: String,
}

fn file_err(file: &str, line: Option<usize>, message: impl Into<String>) -> SchemaError {
    SchemaError {
        file: Some(file.to_owned()),
        line,
        collection: None,
        field: None,
        message: message.into(),
    }
}

fn toml_err(file: &str, text: &str, e: &toml::de::Error) -> SchemaError {
    file_err(
        file,
        e.span().map(|s| line_of(text, s.start)),
        e.message().trim().to_owned(),
    )
}

fn read(dir: &Path, rel: &str) -> Result<Option<String>, SchemaError> {
    match fs::read_to_string(dir.join(rel)) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(file_err(rel, None, format!("cannot read: {e}"))),
    }
}

/// Loads and validates a project folder. All problems are returned at once, each with
/// its file and line, so one `ferrobase plan` run shows everything to fix.
pub fn load_project(dir: &Path) -> Result<Project, Vec<SchemaError>> {
    let mut errs = Vec::new();

    let mut name = String::new();
    let mut environments = BTreeMap::new();
    match read(dir, "ferrobase.toml") {
        Err(e) => errs.push(e),
        Ok(None) => errs.push(file_err(
            "ferrobase.toml",
            None,
            format!(
                "not found in {} (is this a project folder? `ferrobase init` creates one)",
                dir.display()
            ),
        )),
        Ok(Some(text)) => match toml::from_str::<Manifest>(&text) {
            Ok(m) => {
                name = m.project.name;
                environments = m.environments;
            }
            Err(e) => errs.push(toml_err("ferrobase.toml", &text, &e)),
        },
    }

    let flags = match read(dir, "flags.toml") {
        Err(e) => {
            errs.push(e);
            None
        }
        Ok(None) => None,
        Ok(Some(text)) => match text.parse::<toml::Table>() {
            Ok(t) => Some(t),
            Err(e) => {
                errs.push(toml_err("flags.toml", &text, &e));
                None
            }
        },
    };

    let push = match read(dir, "push.toml") {
        Err(e) => {
            errs.push(e);
            Default::default()
        }
        Ok(None) => Default::default(),
        Ok(Some(text)) => match toml::from_str::<crate::push::PushProject>(&text) {
            Ok(p) => {
                for mut e in crate::push::validate_push(&p) {
                    e.file = Some("push.toml".into());
                    if let Some(name) = &e.field {
                        e.line = text
                            .find(&format!("[categories.{name}]"))
                            .map(|at| line_of(&text, at));
                    }
                    errs.push(e);
                }
                p
            }
            Err(e) => {
                errs.push(toml_err("push.toml", &text, &e));
                Default::default()
            }
        },
    };

    let mut files: Vec<String> = Vec::new();
    match fs::read_dir(dir.join("collections")) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => errs.push(file_err("collections", None, format!("cannot read: {e}"))),
        Ok(entries) => {
            for entry in entries.flatten() {
                let fname = entry.file_name().to_string_lossy().into_owned();
                if fname.ends_with(".toml") && entry.path().is_file() {
                    files.push(fname);
                }
            }
        }
    }
    files.sort();
    if files.len() > MAX_COLLECTIONS {
        errs.push(file_err(
            "collections",
            None,
            format!(
                "too many collections ({}; at most {MAX_COLLECTIONS})",
                files.len()
            ),
        ));
        return Err(errs);
    }

    let mut collections = Vec::new();
    let mut located: HashMap<String, (String, HashMap<String, usize>)> = HashMap::new();
    for fname in files {
        let label = format!("collections/{fname}");
        let text = match read(dir, &label) {
            Ok(Some(t)) => t,
            Ok(None) => continue,
            Err(e) => {
                errs.push(e);
                continue;
            }
        };
        match parse_for_project(&label, &text) {
            Ok((c, lines)) => {
                located.insert(c.name.clone(), (label, lines));
                collections.push(c);
            }
            Err(e) => errs.extend(e),
        }
    }

    // Cross-collection checks only on a set whose files all parsed: a broken file would
    // otherwise show up again as "relation to unknown collection" elsewhere.
    if errs.is_empty() {
        let loc_of = |name: &str| match located.get(name) {
            Some((file, lines)) => Loc {
                file: Some(file.as_str()),
                lines: Some(lines),
            },
            None => Loc::NONE,
        };
        errs.extend(check_set(&collections, &loc_of));
    }
    let mut scripts = BTreeMap::new();
    // Only once every trigger target passed its shape check (relative, no `..`).
    let checked: &[Collection] = if errs.is_empty() { &collections } else { &[] };
    for c in checked {
        for (hook, target) in &c.triggers {
            let Some((file, _)) = target.split_once('#') else {
                continue;
            };
            if scripts.contains_key(file) {
                continue;
            }
            let label = located.get(&c.name).map_or_else(
                || format!("collections/{}.toml", c.name),
                |(f, _)| f.clone(),
            );
            match read(dir, file) {
                Ok(Some(text)) if text.len() <= MAX_SCRIPT_BYTES => {
                    scripts.insert(file.to_owned(), text);
                }
                Ok(Some(_)) => errs.push(file_err(
                    file,
                    None,
                    format!("larger than {} KiB", MAX_SCRIPT_BYTES / 1024),
                )),
                Ok(None) => errs.push(file_err(
                    &label,
                    None,
                    format!("trigger `{hook}` names {file}, which does not exist"),
                )),
                Err(e) => errs.push(e),
            }
        }
    }
    if errs.is_empty() {
        Ok(Project {
            name,
            environments,
            collections,
            flags,
            push,
            scripts,
        })
    } else {
        Err(errs)
    }
}

const POSTS_EXAMPLE: &str = r#"# A collection: one table, its fields, who may do what, and its indexes.
# Reference: docs/schema.md. Apply with `ferrobase plan` then `ferrobase apply`.
name = "posts"
conflict = "reject"            # or "last_write_wins" (ignore If-Match)

[fields]
title     = { type = "text", required = true, max = 200 }
body      = { type = "text" }
# author  = { type = "relation", collection = "users" }
published = { type = "bool", default = false }
views     = { type = "integer", default = 0, min = 0 }
# cover   = { type = "file", max_size = "5MB", mime = ["image/png", "image/jpeg"] }
# tags    = { type = "select", values = ["news", "howto"], multiple = true }

[rules]                         # absent = locked (admins and API keys only); "true" = public
list = "true"
view = "true"
create = "true"                 # anyone may post; with sign-in: "@auth.id != '' && @data.author = @auth.id"
# update = "author = @auth.id"
# delete = "author = @auth.id"

[[indexes]]
fields = ["published", "created_at"]

# [triggers]
# before_create = "triggers/posts.rhai#before_create"
"#;

const FLAGS_EXAMPLE: &str = r#"# Feature flags and remote config, served at /v1/config.
#
# [min_version]
# ios = "2.0.0"
# android = "1.9.0"
#
# [store_url]
# ios = "https://apps.apple.com/app/id0000000000"
#
# [flags.new_onboarding]
# type = "bool"                  # bool | string | number | json
# default = false
# [[flags.new_onboarding.rules]] # first match wins
# platform = "ios"
# app_version = ">=2.1.0"
# rollout = 25                   # percent of users, by a stable hash of the user id
# value = true
"#;

const GITIGNORE: &str =
    "# Local server data and secrets never belong in the repository.\nfb_data/\n.env\n";

/// Creates a new project folder. Refuses (with `AlreadyExists`) when any file it would
/// write already exists, before writing anything, so `init` never clobbers work.
pub fn init_project(dir: &Path, name: &str) -> io::Result<()> {
    let manifest = format!(
        "# Ferrobase project: the backend as code. `ferrobase plan` / `ferrobase apply`.\n\
         [project]\nname = {}\n\n\
         [environments.local]            # the default environment; `--env prod` picks another\n\
         server = \"http://127.0.0.1:8090\"\n",
        toml::Value::String(name.to_owned())
    );
    let files: [(&str, &str); 4] = [
        ("ferrobase.toml", &manifest),
        ("collections/posts.toml", POSTS_EXAMPLE),
        ("flags.toml", FLAGS_EXAMPLE),
        (".gitignore", GITIGNORE),
    ];
    for (rel, _) in &files {
        if dir.join(rel).exists() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} already exists; not overwriting",
                    dir.join(rel).display()
                ),
            ));
        }
    }
    fs::create_dir_all(dir.join("collections"))?;
    for (rel, content) in &files {
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dir.join(rel))
            .and_then(|mut f| io::Write::write_all(&mut f, content.as_bytes()))?;
    }
    Ok(())
}
