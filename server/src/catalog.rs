//! The collections currently applied, compiled for fast request handling: column lists, decode
//! types, parsed rules and text patterns. Rebuilt whenever a schema version is applied (or seen
//! from another replica) and swapped in atomically, so a request always sees one whole version.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use ferrobase_expr::{Expr, ValueType};
use ferrobase_schema::{Collection, FieldType};

use crate::db::ColType;

/// One column of a collection's table, system columns first.
#[derive(Clone, Debug)]
pub struct Column {
    pub name: String,
    pub col: ColType,
    /// `None` for system columns.
    pub field: Option<FieldType>,
}

/// The parsed rule of each operation; `None` = locked (admins and API keys only).
#[derive(Clone, Debug, Default)]
pub struct CompiledRules {
    pub list: Option<Expr>,
    pub view: Option<Expr>,
    pub create: Option<Expr>,
    pub update: Option<Expr>,
    pub delete: Option<Expr>,
}

/// A collection ready for requests.
#[derive(Debug)]
pub struct CollectionInfo {
    pub def: Collection,
    pub table: String,
    pub columns: Vec<Column>,
    /// `"id", "created_at", …` in column order.
    pub select_list: String,
    pub col_types: Vec<ColType>,
    pub rules: CompiledRules,
    pub patterns: HashMap<String, regex::Regex>,
    /// Fields clients may not write (the built-in user fields set by auth flows).
    pub readonly: Vec<String>,
}

pub const SYSTEM_FIELDS: [&str; 4] = ["id", "created_at", "updated_at", "version"];

/// How a field's value is stored and decoded.
pub fn col_type(ty: &FieldType) -> ColType {
    match ty.value_type() {
        ValueType::Text => ColType::Text,
        ValueType::Number => ColType::Float,
        ValueType::Integer => ColType::Int,
        ValueType::Bool => ColType::Bool,
        ValueType::Date => ColType::Time,
        ValueType::TextList | ValueType::Json => ColType::Json,
    }
}

impl CollectionInfo {
    /// Compiles a validated collection. Rules were validated when the schema was applied, so a
    /// rule that no longer parses (it cannot happen through `apply`) locks the operation.
    pub fn compile(def: Collection) -> Self {
        let mut columns = vec![
            Column {
                name: "id".into(),
                col: ColType::Text,
                field: None,
            },
            Column {
                name: "created_at".into(),
                col: ColType::Time,
                field: None,
            },
            Column {
                name: "updated_at".into(),
                col: ColType::Time,
                field: None,
            },
            Column {
                name: "version".into(),
                col: ColType::Int,
                field: None,
            },
        ];
        let mut patterns = HashMap::new();
        for (name, field) in &def.fields {
            columns.push(Column {
                name: name.clone(),
                col: col_type(&field.ty),
                field: Some(field.ty.clone()),
            });
            if let FieldType::Text {
                pattern: Some(p), ..
            } = &field.ty
                && let Ok(re) = regex::Regex::new(p)
            {
                patterns.insert(name.clone(), re);
            }
        }
        let select_list = columns
            .iter()
            .map(|c| format!("\"{}\"", c.name))
            .collect::<Vec<_>>()
            .join(", ");
        let col_types = columns.iter().map(|c| c.col).collect();
        let parse = |r: &Option<String>| r.as_deref().and_then(|s| ferrobase_expr::parse(s).ok());
        let rules = CompiledRules {
            list: parse(&def.rules.list),
            view: parse(&def.rules.view),
            create: parse(&def.rules.create),
            update: parse(&def.rules.update),
            delete: parse(&def.rules.delete),
        };
        let readonly = if def.name == "users" {
            crate::auth::users::readonly()
        } else {
            Vec::new()
        };
        CollectionInfo {
            readonly,
            table: def.table(),
            def,
            columns,
            select_list,
            col_types,
            rules,
            patterns,
        }
    }

    pub fn name(&self) -> &str {
        &self.def.name
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// All applied collections at one schema version.
#[derive(Debug, Default)]
pub struct Catalog {
    pub version: i64,
    pub collections: Vec<Collection>,
    by_name: HashMap<String, Arc<CollectionInfo>>,
}

impl Catalog {
    /// `collections` as declared; the built-in `users` collection is always present, extended
    /// by a declared `users` collection.
    pub fn new(version: i64, collections: Vec<Collection>) -> Self {
        let mut by_name: HashMap<String, Arc<CollectionInfo>> = collections
            .iter()
            .filter(|c| c.name != "users")
            .map(|c| (c.name.clone(), Arc::new(CollectionInfo::compile(c.clone()))))
            .collect();
        let users =
            crate::auth::users::users_collection(collections.iter().find(|c| c.name == "users"));
        by_name.insert("users".into(), Arc::new(CollectionInfo::compile(users)));
        Catalog {
            version,
            collections,
            by_name,
        }
    }

    pub fn get(&self, name: &str) -> Option<Arc<CollectionInfo>> {
        self.by_name.get(name).cloned()
    }

    /// Every collection's name, `users` included.
    pub fn names(&self) -> Vec<String> {
        self.by_name.keys().cloned().collect()
    }
}

/// The shared, swappable current catalog.
#[derive(Clone, Default)]
pub struct CatalogHandle(Arc<RwLock<Arc<Catalog>>>);

impl CatalogHandle {
    pub fn current(&self) -> Arc<Catalog> {
        match self.0.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
    pub fn replace(&self, catalog: Catalog) {
        let new = Arc::new(catalog);
        match self.0.write() {
            Ok(mut g) => *g = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
    }
}
