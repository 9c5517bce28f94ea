//! `push.toml`: the notification categories a project declares.
//!
//! ```toml
//! [categories.marketing]
//! default = true                      # users who never chose receive it
//! description = "News and offers"
//! ```
//! Users opt out per category (`/v1/me/notifications`); a push without a category is
//! transactional. Categories are applied with the collections (`ferrobase plan` / `apply`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::check::is_identifier;
use crate::diff::{Change, ChangeKind};
use crate::error::SchemaError;

/// Categories a project may declare.
pub const MAX_CATEGORIES: usize = 64;
const MAX_DESCRIPTION: usize = 200;

/// The contents of `push.toml`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushProject {
    #[serde(default)]
    pub categories: BTreeMap<String, PushCategory>,
}

/// One category.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushCategory {
    /// Whether users who never chose receive it.
    pub default: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Names are identifiers (they appear in URLs, JSON keys and the dashboard).
pub fn validate_push(p: &PushProject) -> Vec<SchemaError> {
    let mut errs = Vec::new();
    if p.categories.len() > MAX_CATEGORIES {
        errs.push(SchemaError::new(format!(
            "at most {MAX_CATEGORIES} categories"
        )));
    }
    for (name, c) in &p.categories {
        if !is_identifier(name) {
            errs.push(SchemaError {
                field: Some(name.clone()),
                ..SchemaError::new(format!(
                    "category `{name}`: names are lowercase letters, digits and _, starting \
                     with a letter"
                ))
            });
        }
        if c.description
            .as_ref()
            .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION)
        {
            errs.push(SchemaError {
                field: Some(name.clone()),
                ..SchemaError::new(format!(
                    "category `{name}`: description is at most {MAX_DESCRIPTION} characters"
                ))
            });
        }
    }
    errs
}

/// The changes from the applied categories to the desired ones.
pub fn plan_push(
    current: &BTreeMap<String, PushCategory>,
    desired: &BTreeMap<String, PushCategory>,
) -> Vec<Change> {
    let mut out = Vec::new();
    let on = |c: &PushCategory| if c.default { "on" } else { "off" };
    for (name, d) in desired {
        match current.get(name) {
            None => out.push(Change {
                kind: ChangeKind::AddPushCategory,
                collection: String::new(),
                field: Some(name.clone()),
                destructive: false,
                description: format!("+ push category {name} (default {})", on(d)),
            }),
            Some(c) if c != d => out.push(Change {
                kind: ChangeKind::ChangePushCategory,
                collection: String::new(),
                field: Some(name.clone()),
                destructive: false,
                description: format!("~ push category {name} (default {})", on(d)),
            }),
            Some(_) => {}
        }
    }
    for name in current.keys().filter(|n| !desired.contains_key(*n)) {
        out.push(Change {
            kind: ChangeKind::RemovePushCategory,
            collection: String::new(),
            field: Some(name.clone()),
            destructive: false,
            description: format!("- push category {name} (users' choices for it are kept)"),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cat(default: bool) -> PushCategory {
        PushCategory {
            default,
            description: None,
        }
    }

    #[test]
    fn plans_adds_changes_and_removals() {
        let current = BTreeMap::from([("news".to_owned(), cat(true)), ("old".into(), cat(true))]);
        let desired =
            BTreeMap::from([("news".to_owned(), cat(false)), ("promo".into(), cat(true))]);
        let kinds: Vec<_> = plan_push(&current, &desired)
            .into_iter()
            .map(|c| (c.kind, c.field.unwrap_or_default()))
            .collect();
        assert_eq!(
            kinds,
            [
                (ChangeKind::ChangePushCategory, "news".to_owned()),
                (ChangeKind::AddPushCategory, "promo".into()),
                (ChangeKind::RemovePushCategory, "old".into()),
            ]
        );
        assert!(plan_push(&desired, &desired).is_empty());
    }

    #[test]
    fn names_must_be_identifiers() {
        let p = PushProject {
            categories: BTreeMap::from([("Bad-Name".to_owned(), cat(true))]),
        };
        assert_eq!(validate_push(&p).len(), 1);
        assert!(validate_push(&PushProject::default()).is_empty());
    }
}
