//! The built-in `users` collection: its fixed fields, the project's extra fields from
//! `collections/users.toml`, and its default rules (a user sees and changes only themselves).

use ferrobase_schema::{Collection, Field, FieldType};

/// Fields every user has, in output order, and whether clients may write them through the
/// records API or `PATCH /v1/auth/me` (the others change only through auth flows).
pub const BUILTIN: [(&str, bool); 5] = [
    ("email", false),
    ("email_verified", false),
    ("name", true),
    ("avatar", true),
    ("is_anonymous", false),
];

pub const DEFAULT_SELF_RULE: &str = "id = @auth.id";

/// The collection the server runs with for `users`: built-in fields, then the declared extra
/// fields; the declared rules when any are declared, else the defaults.
pub fn users_collection(declared: Option<&Collection>) -> Collection {
    let mut c = Collection::new("users");
    c.fields
        .insert("email".into(), Field::new(FieldType::Email));
    c.fields
        .insert("email_verified".into(), Field::new(FieldType::Bool));
    c.fields.insert(
        "name".into(),
        Field::new(FieldType::Text {
            min: None,
            max: Some(200),
            pattern: None,
        }),
    );
    c.fields.insert(
        "avatar".into(),
        Field::new(FieldType::Text {
            min: None,
            max: Some(1000),
            pattern: None,
        }),
    );
    c.fields
        .insert("is_anonymous".into(), Field::new(FieldType::Bool));
    match declared {
        Some(d) => {
            for (name, f) in &d.fields {
                c.fields.insert(name.clone(), f.clone());
            }
            c.indexes = d.indexes.clone();
            c.triggers = d.triggers.clone();
            c.conflict = d.conflict;
            if d.rules.is_empty() {
                set_default_rules(&mut c);
            } else {
                c.rules = d.rules.clone();
            }
        }
        None => set_default_rules(&mut c),
    }
    c
}

fn set_default_rules(c: &mut Collection) {
    c.rules.list = Some(DEFAULT_SELF_RULE.into());
    c.rules.view = Some(DEFAULT_SELF_RULE.into());
    c.rules.update = Some(DEFAULT_SELF_RULE.into());
    c.rules.delete = Some(DEFAULT_SELF_RULE.into());
}

/// Names clients may not write on a user record.
pub fn readonly() -> Vec<String> {
    BUILTIN
        .iter()
        .filter(|(_, writable)| !writable)
        .map(|(n, _)| (*n).to_owned())
        .collect()
}
