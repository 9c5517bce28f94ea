//! In-memory evaluator, used to filter realtime events. It mirrors the SQL of `sql.rs`
//! operator by operator (two-valued logic, null handling, byte-order text comparison,
//! dialect-specific case folding), and reads values from the record as the API returns it.

use crate::ast::{CmpOp, Node, OperandKind};
use crate::plan::{Kind, Plan, Typed, param_value, plan_leaf};
use crate::{Context, Dialect, ExprError, Scope, SqlParam, ValueType, parse_date};
use serde_json::{Map, Value};
use std::cmp::Ordering;

#[derive(Clone, Debug, PartialEq)]
enum V {
    Null,
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Time(chrono::DateTime<chrono::Utc>),
    List(Vec<String>),
    /// A non-null json value (only its presence matters).
    Json,
}

struct Evaluator<'a, 'c> {
    record: &'a Map<String, Value>,
    scope: &'a dyn Scope,
    ctx: &'a Context<'c>,
    dialect: Dialect,
}

pub(crate) fn eval(
    n: &Node,
    record: &Map<String, Value>,
    scope: &dyn Scope,
    ctx: &Context,
    dialect: Dialect,
) -> Result<bool, ExprError> {
    // Type errors must surface even in branches that short-circuiting would skip, so the
    // evaluator accepts exactly the expressions the SQL compiler accepts.
    crate::plan::check(n, scope)?;
    Evaluator {
        record,
        scope,
        ctx,
        dialect,
    }
    .node(n)
}

/// Reads a record value stored as JSON, at the type the field is declared with.
fn from_json(v: Option<&Value>, ty: ValueType) -> V {
    let Some(v) = v else { return V::Null };
    match (ty, v) {
        (_, Value::Null) => V::Null,
        (ValueType::Text, Value::String(s)) => V::Text(s.clone()),
        (ValueType::Number, Value::Number(n)) => n.as_f64().map_or(V::Null, V::Float),
        (ValueType::Integer, Value::Number(n)) => match n.as_i64() {
            Some(i) => V::Int(i),
            None => n.as_f64().map_or(V::Null, V::Float),
        },
        (ValueType::Bool, Value::Bool(b)) => V::Bool(*b),
        (ValueType::Date, Value::String(s)) => parse_date(s).map_or(V::Null, V::Time),
        (ValueType::TextList, Value::Array(a)) => V::List(
            a.iter()
                .filter_map(|e| e.as_str().map(str::to_string))
                .collect(),
        ),
        (ValueType::Json, _) => V::Json,
        _ => V::Null,
    }
}

fn from_param(p: SqlParam, ty: ValueType) -> V {
    match p {
        SqlParam::Null => V::Null,
        SqlParam::Bool(b) => V::Bool(b),
        SqlParam::Int(i) => V::Int(i),
        SqlParam::Float(f) => V::Float(f),
        SqlParam::Time(t) => V::Time(t),
        SqlParam::Text(s) => match ty {
            ValueType::TextList | ValueType::Json => {
                let parsed = serde_json::from_str::<Value>(&s).ok();
                from_json(parsed.as_ref(), ty)
            }
            _ => V::Text(s),
        },
    }
}

/// Compares two non-null values of compatible types (guaranteed by the plan).
fn compare(a: &V, b: &V) -> Option<Ordering> {
    match (a, b) {
        (V::Text(x), V::Text(y)) => Some(x.as_bytes().cmp(y.as_bytes())),
        (V::Int(x), V::Int(y)) => Some(x.cmp(y)),
        // Mixed integer/real comparisons go through f64, like PostgreSQL's int8→float8 cast.
        (V::Int(x), V::Float(y)) => (*x as f64).partial_cmp(y),
        (V::Float(x), V::Int(y)) => x.partial_cmp(&(*y as f64)),
        (V::Float(x), V::Float(y)) => x.partial_cmp(y),
        (V::Bool(x), V::Bool(y)) => Some(x.cmp(y)),
        (V::Time(x), V::Time(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn equal(a: &V, b: &V) -> bool {
    compare(a, b) == Some(Ordering::Equal)
}

impl Evaluator<'_, '_> {
    fn node(&self, n: &Node) -> Result<bool, ExprError> {
        match n {
            Node::Or(v) => {
                for c in v {
                    if self.node(c)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Node::And(v) => {
                for c in v {
                    if !self.node(c)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Node::Not(c) => Ok(!self.node(c)?),
            leaf => {
                let plan = plan_leaf(leaf, self.scope)?;
                Ok(self.plan(&plan))
            }
        }
    }

    fn value(&self, t: Typed<'_>) -> V {
        match &t.op.kind {
            OperandKind::Field(name) => from_json(self.record.get(name), t.ty),
            _ => from_param(param_value(t, self.ctx), t.ty),
        }
    }

    fn fold(&self, s: &str) -> String {
        match self.dialect {
            // SQLite's built-in lower() folds ASCII only.
            Dialect::Sqlite => s.to_ascii_lowercase(),
            // PostgreSQL lower() under ICU: full Unicode lowercase mapping.
            Dialect::Postgres => s.to_lowercase(),
        }
    }

    fn plan(&self, p: &Plan<'_>) -> bool {
        match p {
            Plan::IsNull { x, negated } => (self.value(*x) == V::Null) != *negated,
            Plan::Cmp { op, l, r, kind } => {
                let (a, b) = (self.value(*l), self.value(*r));
                debug_assert!(*kind != Kind::Bool || matches!(op, CmpOp::Eq | CmpOp::Ne));
                match op {
                    CmpOp::Ne => match (&a, &b) {
                        (V::Null, V::Null) => false,
                        (V::Null, _) | (_, V::Null) => true,
                        _ => !equal(&a, &b),
                    },
                    _ => {
                        let Some(ord) = compare(&a, &b) else {
                            return false;
                        };
                        match op {
                            CmpOp::Eq => ord == Ordering::Equal,
                            CmpOp::Gt => ord == Ordering::Greater,
                            CmpOp::Ge => ord != Ordering::Less,
                            CmpOp::Lt => ord == Ordering::Less,
                            CmpOp::Le => ord != Ordering::Greater,
                            _ => false,
                        }
                    }
                }
            }
            Plan::TextContains { l, r, negated } => {
                let hit = match (self.value(*l), self.value(*r)) {
                    (V::Text(a), V::Text(b)) => self.fold(&a).contains(&self.fold(&b)),
                    _ => false,
                };
                hit != *negated
            }
            Plan::ListContains {
                list,
                item,
                negated,
            } => {
                let hit = match (self.value(*list), self.value(*item)) {
                    (V::List(xs), V::Text(b)) => xs.contains(&b),
                    _ => false,
                };
                hit != *negated
            }
            Plan::In { l, items, .. } => {
                let a = self.value(*l);
                a != V::Null && items.iter().any(|t| equal(&a, &self.value(*t)))
            }
            Plan::Bare(t) => self.value(*t) == V::Bool(true),
        }
    }
}
