//! Diffing two schema versions: the `plan` shown to humans and the input of `ddl`.
//!
//! Both are computed from one [`CollectionDiff`] so what `plan` announces is exactly what
//! the DDL does (a rename is shown as a rename *and* executed as one).

use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;

use serde::Serialize;

use crate::model::{Collection, Field, FieldType, Index};

/// One step of a plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    pub kind: ChangeKind,
    pub collection: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Data is lost when this step runs; `apply` refuses it without `--allow-destructive`.
    pub destructive: bool,
    /// A one-line, human-readable description with a `+`/`-`/`~` marker.
    pub description: String,
}

/// What a [`Change`] does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    CreateCollection,
    DropCollection,
    AddField,
    RemoveField,
    RenameField,
    ChangeFieldType,
    /// Constraints, options, default or required changed; storage unchanged.
    ChangeField,
    ChangeRule,
    AddIndex,
    DropIndex,
    ChangeConflict,
    ChangeTriggers,
    /// `push.toml` categories (`collection` is empty, `field` names the category).
    AddPushCategory,
    RemovePushCategory,
    ChangePushCategory,
}

/// Field-level differences of one collection present on both sides.
pub(crate) struct CollectionDiff<'a> {
    pub cur: &'a Collection,
    pub des: &'a Collection,
    /// `(old, new)` column renames.
    pub renames: Vec<(&'a str, &'a str)>,
    /// Current fields with no counterpart.
    pub removed: Vec<&'a str>,
    /// Desired fields with no counterpart.
    pub added: Vec<&'a str>,
    /// `(current name, desired name)` pairs whose type name or storage changed.
    pub retyped: Vec<(&'a str, &'a str)>,
    /// `(current name, desired name)` pairs whose options changed (same type).
    pub changed: Vec<(&'a str, &'a str)>,
    pub dropped_indexes: Vec<&'a Index>,
    pub added_indexes: Vec<&'a Index>,
}

impl<'a> CollectionDiff<'a> {
    pub(crate) fn new(cur: &'a Collection, des: &'a Collection) -> Self {
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        let mut renames = Vec::new();
        let mut added = Vec::new();
        let mut claimed: HashSet<&str> = HashSet::new();
        for (name, f) in &des.fields {
            if cur.fields.contains_key(name) {
                pairs.push((name, name));
                claimed.insert(name);
                continue;
            }
            // A rename only when the old column exists and nothing else claims it; once
            // applied, the new name exists and `renamed_from` is inert (re-apply = no-op).
            match f.renamed_from.as_deref() {
                Some(old)
                    if cur.fields.contains_key(old)
                        && !des.fields.contains_key(old)
                        && !claimed.contains(old) =>
                {
                    claimed.insert(old);
                    pairs.push((old, name));
                    renames.push((old, name.as_str()));
                }
                _ => added.push(name.as_str()),
            }
        }
        let removed = cur
            .fields
            .keys()
            .map(String::as_str)
            .filter(|n| !claimed.contains(n))
            .collect();
        let mut retyped = Vec::new();
        let mut changed = Vec::new();
        for (old, new) in pairs {
            let (Some(a), Some(b)) = (cur.fields.get(old), des.fields.get(new)) else {
                continue;
            };
            if a.ty.type_name() != b.ty.type_name() || a.ty.storage() != b.ty.storage() {
                retyped.push((old, new));
            } else if !a.same_definition(b) {
                changed.push((old, new));
            }
        }
        let dropped_indexes = cur
            .indexes
            .iter()
            .filter(|i| !des.indexes.contains(i))
            .collect();
        let added_indexes = des
            .indexes
            .iter()
            .filter(|i| !cur.indexes.contains(i))
            .collect();
        CollectionDiff {
            cur,
            des,
            renames,
            removed,
            added,
            retyped,
            changed,
            dropped_indexes,
            added_indexes,
        }
    }

    /// Whether the retyped pair needs its column dropped and re-added.
    pub(crate) fn storage_changes(&self, old: &str, new: &str) -> bool {
        match (self.cur.fields.get(old), self.des.fields.get(new)) {
            (Some(a), Some(b)) => a.ty.storage() != b.ty.storage(),
            _ => false,
        }
    }
}

/// `text, required, max 80` — a field's type and options for descriptions.
pub(crate) fn describe_field(f: &Field) -> String {
    let mut parts = vec![f.ty.type_name().to_owned()];
    if f.required {
        parts.push("required".into());
    }
    match &f.ty {
        FieldType::Select { values, multiple } => {
            parts.push(format!("[{}]", values.join(", ")));
            if *multiple {
                parts.push("multiple".into());
            }
        }
        FieldType::Relation {
            collection,
            multiple,
        } => {
            parts.push(format!("→ {collection}"));
            if *multiple {
                parts.push("multiple".into());
            }
        }
        other => {
            for (k, v) in other.options() {
                match v {
                    serde_json::Value::Bool(true) => parts.push(k.to_owned()),
                    serde_json::Value::String(s) => parts.push(format!("{k} {s}")),
                    v => parts.push(format!("{k} {v}")),
                }
            }
        }
    }
    if let Some(d) = &f.default {
        parts.push(format!("default {d}"));
    }
    parts.join(", ")
}

fn describe_index(ix: &Index) -> String {
    format!(
        "{}index ({})",
        if ix.unique { "unique " } else { "" },
        ix.fields.join(", ")
    )
}

fn describe_rule(r: Option<&String>) -> String {
    match r {
        None => "locked".to_owned(),
        Some(s) => format!("{s:?}"),
    }
}

/// The changes that turn `current` into `desired`, in a stable order: per desired
/// collection (in order), then dropped collections.
pub fn plan(current: &[Collection], desired: &[Collection]) -> Vec<Change> {
    let mut out = Vec::new();
    for des in desired {
        match current.iter().find(|c| c.name == des.name) {
            None => {
                let n = des.fields.len();
                let mut desc = format!(
                    "+ collection {} ({n} field{}",
                    des.name,
                    if n == 1 { "" } else { "s" }
                );
                if !des.indexes.is_empty() {
                    let k = des.indexes.len();
                    let _ = write!(desc, ", {k} index{}", if k == 1 { "" } else { "es" });
                }
                desc.push(')');
                out.push(Change {
                    kind: ChangeKind::CreateCollection,
                    collection: des.name.clone(),
                    field: None,
                    destructive: false,
                    description: desc,
                });
            }
            Some(cur) => plan_collection(&CollectionDiff::new(cur, des), &mut out),
        }
    }
    for cur in current {
        if !desired.iter().any(|d| d.name == cur.name) {
            out.push(Change {
                kind: ChangeKind::DropCollection,
                collection: cur.name.clone(),
                field: None,
                destructive: true,
                description: format!(
                    "- collection {} — DESTRUCTIVE: drops the table and all its records",
                    cur.name
                ),
            });
        }
    }
    out
}

fn plan_collection(d: &CollectionDiff<'_>, out: &mut Vec<Change>) {
    let name = &d.des.name;
    let change = |kind, field: Option<&str>, destructive, description| Change {
        kind,
        collection: name.clone(),
        field: field.map(str::to_owned),
        destructive,
        description,
    };
    if d.cur.conflict != d.des.conflict {
        out.push(change(
            ChangeKind::ChangeConflict,
            None,
            false,
            format!(
                "~ {name} conflict: {} → {}",
                d.cur.conflict.as_str(),
                d.des.conflict.as_str()
            ),
        ));
    }
    for (old, new) in &d.renames {
        out.push(change(
            ChangeKind::RenameField,
            Some(new),
            false,
            format!("~ {name}.{old} → {name}.{new} (rename, data kept)"),
        ));
    }
    for f in &d.removed {
        let desc = d.cur.fields.get(*f).map(describe_field).unwrap_or_default();
        out.push(change(
            ChangeKind::RemoveField,
            Some(f),
            true,
            format!("- {name}.{f} ({desc}) — DESTRUCTIVE: drops its data"),
        ));
    }
    for (old, new) in &d.retyped {
        let (Some(a), Some(b)) = (d.cur.fields.get(*old), d.des.fields.get(*new)) else {
            continue;
        };
        let storage = d.storage_changes(old, new);
        let destructive = storage || (a.ty.is_multiple() && !b.ty.is_multiple());
        let tail = if destructive {
            " — DESTRUCTIVE: storage changes, drops its data"
        } else {
            " (same storage, data kept)"
        };
        out.push(change(
            ChangeKind::ChangeFieldType,
            Some(new),
            destructive,
            format!(
                "~ {name}.{new}: ({}) → ({}){tail}",
                describe_field(a),
                describe_field(b)
            ),
        ));
    }
    for (old, new) in &d.changed {
        let (Some(a), Some(b)) = (d.cur.fields.get(*old), d.des.fields.get(*new)) else {
            continue;
        };
        out.push(change(
            ChangeKind::ChangeField,
            Some(new),
            false,
            format!(
                "~ {name}.{new}: ({}) → ({})",
                describe_field(a),
                describe_field(b)
            ),
        ));
    }
    for f in &d.added {
        let desc = d.des.fields.get(*f).map(describe_field).unwrap_or_default();
        out.push(change(
            ChangeKind::AddField,
            Some(f),
            false,
            format!("+ {name}.{f} ({desc})"),
        ));
    }
    for ((rule, a), (_, b)) in d.cur.rules.iter().into_iter().zip(d.des.rules.iter()) {
        if a != b {
            out.push(change(
                ChangeKind::ChangeRule,
                None,
                false,
                format!(
                    "~ {name} rule {rule}: {} → {}",
                    describe_rule(a),
                    describe_rule(b)
                ),
            ));
        }
    }
    for ix in &d.dropped_indexes {
        out.push(change(
            ChangeKind::DropIndex,
            None,
            false,
            format!("- {name} {}", describe_index(ix)),
        ));
    }
    for ix in &d.added_indexes {
        out.push(change(
            ChangeKind::AddIndex,
            None,
            false,
            format!("+ {name} {}", describe_index(ix)),
        ));
    }
    if d.cur.triggers != d.des.triggers {
        let keys: BTreeSet<&String> = d.cur.triggers.keys().chain(d.des.triggers.keys()).collect();
        let parts: Vec<String> = keys
            .into_iter()
            .filter_map(|k| match (d.cur.triggers.get(k), d.des.triggers.get(k)) {
                (None, Some(v)) => Some(format!("+{k} = {v}")),
                (Some(_), None) => Some(format!("-{k}")),
                (Some(a), Some(b)) if a != b => Some(format!("~{k} = {b}")),
                _ => None,
            })
            .collect();
        out.push(change(
            ChangeKind::ChangeTriggers,
            None,
            false,
            format!("~ {name} triggers: {}", parts.join(", ")),
        ));
    }
}

/// Renders a plan for the terminal: changes grouped by collection, destructive steps
/// flagged with `!`, and a summary line.
pub fn render_plan(changes: &[Change]) -> String {
    if changes.is_empty() {
        return "No changes. The server matches the project.\n".to_owned();
    }
    let mut out = String::new();
    let mut order: Vec<&str> = Vec::new();
    for c in changes {
        if !order.contains(&c.collection.as_str()) {
            order.push(&c.collection);
        }
    }
    for coll in order {
        let _ = writeln!(out, "collection {coll}:");
        for c in changes.iter().filter(|c| c.collection == coll) {
            let flag = if c.destructive { "!" } else { " " };
            let _ = writeln!(out, " {flag} {}", c.description);
        }
        out.push('\n');
    }
    let count = |m: char| {
        changes
            .iter()
            .filter(|c| c.description.starts_with(m))
            .count()
    };
    let destructive = changes.iter().filter(|c| c.destructive).count();
    let _ = write!(
        out,
        "Plan: {} to add, {} to change, {} to remove",
        count('+'),
        count('~'),
        count('-')
    );
    if destructive > 0 {
        let _ = write!(
            out,
            "; {destructive} DESTRUCTIVE (marked !, needs --allow-destructive)"
        );
    }
    out.push_str(".\n");
    out
}
