//! The collection model: what a `collections/<name>.toml` file (or the admin API's JSON)
//! describes, independent of where it came from.
//!
//! Serialization is hand-written for [`Field`] because the on-disk shape is flat
//! (`{ type = "text", max = 200 }`) while the Rust shape is an enum with per-type options.
//! Deserialization of every type goes through the same builder as `parse_collection`
//! (see `build.rs`), so the TOML file and the JSON API accept exactly the same documents
//! and reject the same mistakes (unknown keys, keys that belong to another type).

use std::collections::BTreeMap;

use indexmap::IndexMap;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::fx;

/// One collection: a table `c_<name>` with typed columns, access rules, indexes and hooks.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Collection {
    /// Identifier (`^[a-z][a-z0-9_]{0,60}$`); also the file stem of its TOML file.
    pub name: String,
    /// What an update with a stale `If-Match` does.
    pub conflict: ConflictPolicy,
    /// User fields, in declaration order (the order is kept for readable pulls and DDL).
    pub fields: IndexMap<String, Field>,
    /// Access rules; an absent rule locks that operation to admins and API keys.
    #[serde(skip_serializing_if = "Rules::is_empty")]
    pub rules: Rules,
    /// Declared secondary indexes (the `(created_at, id)` index is implicit).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub indexes: Vec<Index>,
    /// Hook name (`before_create`, …) → `file.rhai#function`. Only the shape is checked here.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub triggers: BTreeMap<String, String>,
}

/// Conflict policy for concurrent updates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictPolicy {
    /// A stale `If-Match` is refused with 412 (the default: never lose a write silently).
    #[default]
    Reject,
    /// `If-Match` is ignored; the last write wins.
    LastWriteWins,
}

impl ConflictPolicy {
    /// The TOML/JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ConflictPolicy::Reject => "reject",
            ConflictPolicy::LastWriteWins => "last_write_wins",
        }
    }
}

/// Access rules, one expression per operation. `None` = locked; `Some("true")` = public.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete: Option<String>,
}

impl Rules {
    /// The rule names in their canonical order.
    pub const NAMES: [&'static str; 5] = ["list", "view", "create", "update", "delete"];

    /// `(name, rule)` pairs in canonical order, so callers never hand-list the five operations.
    pub fn iter(&self) -> [(&'static str, Option<&String>); 5] {
        [
            ("list", self.list.as_ref()),
            ("view", self.view.as_ref()),
            ("create", self.create.as_ref()),
            ("update", self.update.as_ref()),
            ("delete", self.delete.as_ref()),
        ]
    }

    /// Mutable access by name (used by the builder).
    pub(crate) fn slot(&mut self, name: &str) -> Option<&mut Option<String>> {
        match name {
            "list" => Some(&mut self.list),
            "view" => Some(&mut self.view),
            "create" => Some(&mut self.create),
            "update" => Some(&mut self.update),
            "delete" => Some(&mut self.delete),
            _ => None,
        }
    }

    /// True when every operation is locked.
    pub fn is_empty(&self) -> bool {
        self.iter().iter().all(|(_, r)| r.is_none())
    }
}

/// A declared index over one or more columns (user or system fields).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Index {
    pub fields: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unique: bool,
}

/// One user field.
#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    pub ty: FieldType,
    /// Enforced by the server's validator, not by a NOT NULL column (so adding a required
    /// field to a table with rows never fails at DDL time).
    pub required: bool,
    /// Applied by the server when a create omits the field. Never JSON `null`.
    pub default: Option<serde_json::Value>,
    /// The field's previous name: makes `plan` rename the column instead of dropping it.
    pub renamed_from: Option<String>,
}

impl Field {
    /// A field of the given type with no flags set.
    pub fn new(ty: FieldType) -> Self {
        Field {
            ty,
            required: false,
            default: None,
            renamed_from: None,
        }
    }

    /// Equality that ignores `renamed_from`, which is migration metadata, not a property
    /// of the stored data.
    pub(crate) fn same_definition(&self, other: &Field) -> bool {
        self.ty == other.ty && self.required == other.required && self.default == other.default
    }
}

/// Field types and their options.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldType {
    Text {
        min: Option<u32>,
        max: Option<u32>,
        pattern: Option<String>,
    },
    Number {
        min: Option<f64>,
        max: Option<f64>,
    },
    Integer {
        min: Option<i64>,
        max: Option<i64>,
    },
    Bool,
    Date,
    Email,
    Url,
    Select {
        values: Vec<String>,
        multiple: bool,
    },
    Json,
    Relation {
        collection: String,
        multiple: bool,
    },
    File {
        multiple: bool,
        max_files: Option<u32>,
        /// Bytes.
        max_size: Option<u64>,
        mime: Vec<String>,
    },
    Geo,
}

/// How a field is stored; two types with the same storage convert without DDL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Storage {
    Text,
    Real,
    Integer,
    Bool,
    Date,
    Json,
}

impl FieldType {
    /// The `type = "…"` spelling.
    pub fn type_name(&self) -> &'static str {
        match self {
            FieldType::Text { .. } => "text",
            FieldType::Number { .. } => "number",
            FieldType::Integer { .. } => "integer",
            FieldType::Bool => "bool",
            FieldType::Date => "date",
            FieldType::Email => "email",
            FieldType::Url => "url",
            FieldType::Select { .. } => "select",
            FieldType::Json => "json",
            FieldType::Relation { .. } => "relation",
            FieldType::File { .. } => "file",
            FieldType::Geo => "geo",
        }
    }

    /// Whether the field holds a list of values (stored as JSON).
    pub fn is_multiple(&self) -> bool {
        matches!(
            self,
            FieldType::Select { multiple: true, .. }
                | FieldType::Relation { multiple: true, .. }
                | FieldType::File { multiple: true, .. }
        )
    }

    /// The type the expression language sees for this field.
    pub fn value_type(&self) -> fx::ValueType {
        if self.is_multiple() {
            return fx::ValueType::TextList;
        }
        match self {
            FieldType::Text { .. }
            | FieldType::Email
            | FieldType::Url
            | FieldType::Select { .. }
            | FieldType::Relation { .. }
            | FieldType::File { .. } => fx::ValueType::Text,
            FieldType::Number { .. } => fx::ValueType::Number,
            FieldType::Integer { .. } => fx::ValueType::Integer,
            FieldType::Bool => fx::ValueType::Bool,
            FieldType::Date => fx::ValueType::Date,
            FieldType::Json | FieldType::Geo => fx::ValueType::Json,
        }
    }

    pub(crate) fn storage(&self) -> Storage {
        if self.is_multiple() {
            return Storage::Json;
        }
        match self {
            FieldType::Text { .. }
            | FieldType::Email
            | FieldType::Url
            | FieldType::Select { .. }
            | FieldType::Relation { .. }
            | FieldType::File { .. } => Storage::Text,
            FieldType::Number { .. } => Storage::Real,
            FieldType::Integer { .. } => Storage::Integer,
            FieldType::Bool => Storage::Bool,
            FieldType::Date => Storage::Date,
            FieldType::Json | FieldType::Geo => Storage::Json,
        }
    }

    /// The options as ordered `(key, value)` pairs, exactly as written in TOML/JSON,
    /// with unset options omitted. Shared by serde, `collection_to_toml` and plan texts.
    pub(crate) fn options(&self) -> Vec<(&'static str, serde_json::Value)> {
        use serde_json::Value as V;
        let mut out = Vec::new();
        let mut opt = |k: &'static str, v: Option<V>| {
            if let Some(v) = v {
                out.push((k, v));
            }
        };
        match self {
            FieldType::Text { min, max, pattern } => {
                opt("min", min.map(V::from));
                opt("max", max.map(V::from));
                opt("pattern", pattern.clone().map(V::from));
            }
            FieldType::Number { min, max } => {
                opt(
                    "min",
                    min.and_then(serde_json::Number::from_f64).map(V::Number),
                );
                opt(
                    "max",
                    max.and_then(serde_json::Number::from_f64).map(V::Number),
                );
            }
            FieldType::Integer { min, max } => {
                opt("min", min.map(V::from));
                opt("max", max.map(V::from));
            }
            FieldType::Select { values, multiple } => {
                opt("values", Some(V::from(values.clone())));
                opt("multiple", multiple.then_some(V::Bool(true)));
            }
            FieldType::Relation {
                collection,
                multiple,
            } => {
                opt("collection", Some(V::from(collection.clone())));
                opt("multiple", multiple.then_some(V::Bool(true)));
            }
            FieldType::File {
                multiple,
                max_files,
                max_size,
                mime,
            } => {
                opt("multiple", multiple.then_some(V::Bool(true)));
                opt("max_files", max_files.map(V::from));
                opt("max_size", max_size.map(V::from));
                opt("mime", (!mime.is_empty()).then(|| V::from(mime.clone())));
            }
            FieldType::Bool
            | FieldType::Date
            | FieldType::Email
            | FieldType::Url
            | FieldType::Json
            | FieldType::Geo => {}
        }
        out
    }
}

impl Field {
    /// All keys of the flat form, in the documented order, unset keys omitted.
    pub(crate) fn entries(&self) -> Vec<(&'static str, serde_json::Value)> {
        let mut out = vec![("type", serde_json::Value::from(self.ty.type_name()))];
        if self.required {
            out.push(("required", serde_json::Value::Bool(true)));
        }
        out.extend(self.ty.options());
        if let Some(d) = &self.default {
            out.push(("default", d.clone()));
        }
        if let Some(r) = &self.renamed_from {
            out.push(("renamed_from", serde_json::Value::from(r.clone())));
        }
        out
    }
}

impl Serialize for Field {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let entries = self.entries();
        let mut map = serializer.serialize_map(Some(entries.len()))?;
        for (k, v) in &entries {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        crate::build::build_field("field", &value, &crate::build::Loc::NONE, None)
            .map_err(|errs| serde::de::Error::custom(crate::error::join(&errs)))
    }
}

impl<'de> Deserialize<'de> for Collection {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        crate::build::build_collection(&value, &crate::build::Loc::NONE, None)
            .map_err(|errs| serde::de::Error::custom(crate::error::join(&errs)))
    }
}

impl Collection {
    /// A collection with no fields, no rules (locked), no indexes.
    pub fn new(name: impl Into<String>) -> Self {
        Collection {
            name: name.into(),
            conflict: ConflictPolicy::Reject,
            fields: IndexMap::new(),
            rules: Rules::default(),
            indexes: Vec::new(),
            triggers: BTreeMap::new(),
        }
    }

    /// The SQL table name. Prefixed so user collections never collide with system tables
    /// (`_fb_*`) or SQL keywords.
    pub fn table(&self) -> String {
        format!("c_{}", self.name)
    }

    /// A scope for `ferrobase-expr` over this collection's fields (user + system).
    pub fn scope(&self, alias: Option<&str>) -> CollectionScope<'_> {
        CollectionScope {
            collection: self,
            alias: alias.map(str::to_owned),
        }
    }
}

/// The system fields every record has (columns created by `create_table_ddl`).
pub const SYSTEM_FIELDS: [&str; 4] = ["id", "created_at", "updated_at", "version"];

/// The expression type of a system field.
fn system_field_type(name: &str) -> Option<fx::ValueType> {
    match name {
        "id" => Some(fx::ValueType::Text),
        "created_at" | "updated_at" => Some(fx::ValueType::Date),
        "version" => Some(fx::ValueType::Integer),
        _ => None,
    }
}

/// Types of the fields the server's built-in `users` collection always has
/// (see `BUILTIN_USER_FIELDS`).
fn builtin_user_field_type(name: &str) -> Option<fx::ValueType> {
    match name {
        "email" | "name" | "avatar" => Some(fx::ValueType::Text),
        "email_verified" | "is_anonymous" => Some(fx::ValueType::Bool),
        _ => None,
    }
}

/// Resolves field names in rules and filters to typed, quoted columns.
#[derive(Debug, Clone)]
pub struct CollectionScope<'a> {
    collection: &'a Collection,
    alias: Option<String>,
}

impl CollectionScope<'_> {
    fn column(&self, name: &str) -> String {
        match &self.alias {
            Some(a) => format!("{a}.\"{name}\""),
            None => format!("\"{name}\""),
        }
    }
}

impl fx::Scope for CollectionScope<'_> {
    fn field(&self, name: &str) -> Option<fx::FieldRef> {
        let ty = system_field_type(name)
            .or_else(|| {
                // `users.toml` only adds fields; its rules may still use the built-in ones.
                (self.collection.name == "users")
                    .then(|| builtin_user_field_type(name))
                    .flatten()
            })
            .or_else(|| self.collection.fields.get(name).map(|f| f.ty.value_type()))?;
        Some(fx::FieldRef {
            ty,
            column: self.column(name),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::fx::Scope;

    #[test]
    fn scope_resolves_user_and_system_fields() {
        let mut c = Collection::new("posts");
        c.fields.insert(
            "title".into(),
            Field::new(FieldType::Text {
                min: None,
                max: None,
                pattern: None,
            }),
        );
        c.fields.insert(
            "tags".into(),
            Field::new(FieldType::Select {
                values: vec!["a".into()],
                multiple: true,
            }),
        );
        let s = c.scope(None);
        let title = s.field("title").unwrap();
        assert_eq!(title.column, "\"title\"");
        assert!(matches!(title.ty, fx::ValueType::Text));
        assert!(matches!(
            s.field("tags").unwrap().ty,
            fx::ValueType::TextList
        ));
        assert!(matches!(
            s.field("version").unwrap().ty,
            fx::ValueType::Integer
        ));
        assert!(matches!(
            s.field("created_at").unwrap().ty,
            fx::ValueType::Date
        ));
        assert!(matches!(
            s.field("updated_at").unwrap().ty,
            fx::ValueType::Date
        ));
        assert!(matches!(s.field("id").unwrap().ty, fx::ValueType::Text));
        assert!(s.field("nope").is_none());
        assert_eq!(
            c.scope(Some("t")).field("title").unwrap().column,
            "t.\"title\""
        );
    }
}
