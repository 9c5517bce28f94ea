//! Collections as code: the TOML format of a project's `collections/*.toml`, its
//! validation, the diff between two schema versions (`plan`) and the DDL that applies
//! it on SQLite or PostgreSQL.
//!
//! # Layout
//! - [`model`]: `Collection`, `Field`, `FieldType`, … and their serde form (= the TOML form).
//! - `build`: one builder from a document tree to the model, shared by TOML and JSON.
//! - `toml_src`: [`parse_collection`], which keeps line numbers for every key.
//! - `check`: [`validate`] and per-collection checks; [`check_rule`] is the one call into
//!   `ferrobase-expr`.
//! - `diff`: [`plan`] and [`render_plan`]; `ddl`: [`ddl`] and [`create_table_ddl`].
//! - `project`: [`load_project`] and [`init_project`]; `to_toml`: [`collection_to_toml`].
#![forbid(unsafe_code)]

mod build;
mod check;
mod ddl;
mod diff;
mod error;
pub mod model;
mod project;
mod push;
mod size;
mod to_toml;
mod toml_src;

/// The expression language; aliased so the one dependency on it is easy to find.
pub(crate) use ferrobase_expr as fx;

/// Re-exported so callers of [`ddl`] need not depend on `ferrobase-expr` themselves.
pub use ferrobase_expr::Dialect;

pub use check::{
    BUILTIN_COLLECTIONS, BUILTIN_USER_FIELDS, MAX_COLLECTION_NAME, MAX_COLLECTIONS, MAX_FIELDS,
    MAX_INDEXES, MAX_RULE_LEN, RESERVED_FIELDS, check_rule, is_identifier, validate,
};
pub use ddl::{create_table_ddl, ddl, index_name};
pub use diff::{Change, ChangeKind, plan, render_plan};
pub use error::SchemaError;
pub use model::{
    Collection, CollectionScope, ConflictPolicy, Field, FieldType, Index, Rules, SYSTEM_FIELDS,
};
pub use project::{Environment, Project, init_project, load_project};
pub use push::{MAX_CATEGORIES, PushCategory, PushProject, plan_push, validate_push};
pub use size::parse_size;
pub use to_toml::collection_to_toml;
pub use toml_src::parse_collection;
