//! SQL compiler. Under a `NOT`, every condition is wrapped so it is two-valued (TRUE/FALSE,
//! never NULL): that keeps `NOT` from leaking SQL's three-valued logic and makes the SQL agree
//! with the evaluator. Outside any `NOT` the wrap is left out: there a row is kept only when
//! the condition is TRUE, and a NULL operand can never make `AND` or `OR` TRUE, so NULL and
//! FALSE select the same rows (and a filter such as `views > 500` costs one comparison per
//! row, not three).

use crate::ast::{CmpOp, Node, OperandKind};
use crate::plan::{Kind, Plan, Typed, param_value, plan_leaf};
use crate::{Context, Dialect, ExprError, Scope, SqlParam, ValueType};

struct Compiler<'a, 'c> {
    scope: &'a dyn Scope,
    ctx: &'a Context<'c>,
    dialect: Dialect,
    params: &'a mut Vec<SqlParam>,
    /// Inside a `NOT`: conditions must be exactly TRUE or FALSE.
    two_valued: bool,
}

pub(crate) fn to_sql(
    n: &Node,
    scope: &dyn Scope,
    ctx: &Context,
    dialect: Dialect,
    params: &mut Vec<SqlParam>,
) -> Result<String, ExprError> {
    let start = params.len();
    let mut c = Compiler {
        scope,
        ctx,
        dialect,
        params,
        two_valued: false,
    };
    let out = c.node(n);
    if out.is_err() {
        // Leave the caller's params as they were on failure.
        c.params.truncate(start);
    }
    out
}

impl Compiler<'_, '_> {
    fn node(&mut self, n: &Node) -> Result<String, ExprError> {
        match n {
            Node::Or(v) | Node::And(v) => {
                let sep = if matches!(n, Node::Or(_)) {
                    " OR "
                } else {
                    " AND "
                };
                let parts = v
                    .iter()
                    .map(|c| self.node(c))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(format!("({})", parts.join(sep)))
            }
            Node::Not(c) => {
                let outer = std::mem::replace(&mut self.two_valued, true);
                let inner = self.node(c);
                self.two_valued = outer;
                Ok(format!("(NOT {})", inner?))
            }
            leaf => {
                let plan = plan_leaf(leaf, self.scope)?;
                self.plan(&plan)
            }
        }
    }

    /// SQL for one operand: the column, or a fresh placeholder bound to its value.
    fn operand(&mut self, t: Typed<'_>) -> Result<String, ExprError> {
        if let OperandKind::Field(name) = &t.op.kind {
            return match self.scope.field(name) {
                Some(f) => Ok(f.column),
                None => Err(ExprError {
                    position: t.op.pos,
                    message: format!("unknown field '{name}'"),
                }),
            };
        }
        let p = param_value(t, self.ctx);
        let pg_type = match (&p, t.ty) {
            (SqlParam::Bool(_), _) => "boolean",
            (SqlParam::Int(_), _) => "bigint",
            (SqlParam::Float(_), _) => "double precision",
            (SqlParam::Time(_), _) => "timestamptz",
            (_, ValueType::TextList | ValueType::Json) => "jsonb",
            (SqlParam::Text(_), _) => "text",
            (SqlParam::Null, ValueType::Text) => "text",
            (SqlParam::Null, ValueType::Number) => "double precision",
            (SqlParam::Null, ValueType::Integer) => "bigint",
            (SqlParam::Null, ValueType::Bool) => "boolean",
            (SqlParam::Null, ValueType::Date) => "timestamptz",
        };
        if self.dialect == Dialect::Postgres && p == SqlParam::Null {
            // A typed NULL constant rather than a placeholder: the driver caches prepared
            // statements by SQL text, so one SQL text must always have the same parameter
            // types. With this, the cast on each placeholder is decided by the value's variant.
            return Ok(format!("CAST(NULL AS {pg_type})"));
        }
        self.params.push(p);
        let n = self.params.len();
        Ok(match self.dialect {
            Dialect::Sqlite => format!("${n}"),
            // Casting every placeholder gives PostgreSQL a definite type regardless of how
            // the caller binds NULL, and lets int/float/text parameters mix freely.
            Dialect::Postgres => format!("CAST(${n} AS {pg_type})"),
        })
    }

    fn plan(&mut self, p: &Plan<'_>) -> Result<String, ExprError> {
        let pg = self.dialect == Dialect::Postgres;
        Ok(match p {
            Plan::IsNull { x, negated } => {
                let x = self.operand(*x)?;
                if *negated {
                    format!("({x} IS NOT NULL)")
                } else {
                    format!("({x} IS NULL)")
                }
            }
            Plan::Cmp { op, kind, l, r } => {
                let (mut a, mut b) = (self.operand(*l)?, self.operand(*r)?);
                let ordering = !matches!(op, CmpOp::Eq | CmpOp::Ne);
                if pg && ordering && *kind == Kind::Text {
                    // Byte order, like Rust's str order, whatever the column collation.
                    a = format!("({a}) COLLATE \"C\"");
                    b = format!("({b}) COLLATE \"C\"");
                }
                match op {
                    CmpOp::Ne if pg => format!("({a} IS DISTINCT FROM {b})"),
                    CmpOp::Ne => format!("({a} IS NOT {b})"),
                    // Where NULL counts as FALSE (outside any NOT), the bare comparison.
                    _ if !self.two_valued => format!("({a} {} {b})", sql_op(*op)),
                    // Two-valued without wrapping the comparison in a function, so the
                    // database can still use an index for `column = $1` (a COALESCE around it
                    // forces a full scan): a NULL on either side makes the IS NOT NULL terms
                    // FALSE, and FALSE AND NULL is FALSE.
                    _ => format!(
                        "({a} {} {b} AND {a} IS NOT NULL AND {b} IS NOT NULL)",
                        sql_op(*op)
                    ),
                }
            }
            Plan::TextContains { l, r, negated } => {
                let (a, b) = (self.operand(*l)?, self.operand(*r)?);
                // instr/strpos, not LIKE: '%' and '_' are ordinary characters.
                let s = if pg {
                    // ICU's root-locale lower() does full Unicode case mapping (mirrored by
                    // Rust's str::to_lowercase); without it, a "C"-collated column would
                    // only fold ASCII.
                    format!(
                        "COALESCE(strpos(lower(({a}) COLLATE \"und-x-icu\"), \
                         lower(({b}) COLLATE \"und-x-icu\")) > 0, FALSE)"
                    )
                } else {
                    format!("COALESCE(instr(lower({a}), lower({b})) > 0, FALSE)")
                };
                negate(s, *negated)
            }
            Plan::ListContains {
                list,
                item,
                negated,
            } => {
                let (a, b) = (self.operand(*list)?, self.operand(*item)?);
                // The item is compared outside the subquery so a column such as "id" or
                // "value" cannot be captured by the table function's own columns.
                let s = if pg {
                    // Only string elements count (mirrors SQLite's json_each type filter).
                    format!(
                        "COALESCE({b} IN (SELECT fb_e.value #>> '{{}}' FROM \
                         jsonb_array_elements({a}) AS fb_e \
                         WHERE jsonb_typeof(fb_e.value) = 'string'), FALSE)"
                    )
                } else {
                    format!(
                        "COALESCE({b} IN (SELECT fb_e.value FROM json_each({a}) AS fb_e \
                         WHERE fb_e.type = 'text'), FALSE)"
                    )
                };
                negate(s, *negated)
            }
            Plan::In { l, items, .. } => {
                if items.is_empty() {
                    // Still validate/bind nothing: an empty list is simply false.
                    return Ok("FALSE".to_string());
                }
                let a = self.operand(*l)?;
                let bs = items
                    .iter()
                    .map(|t| self.operand(*t))
                    .collect::<Result<Vec<_>, _>>()?;
                if self.two_valued {
                    format!("COALESCE({a} IN ({}), FALSE)", bs.join(", "))
                } else {
                    format!("({a} IN ({}))", bs.join(", "))
                }
            }
            Plan::Bare(t) => {
                let x = self.operand(*t)?;
                match (pg, self.two_valued) {
                    (true, true) => format!("COALESCE({x}, FALSE)"),
                    (true, false) => format!("({x})"),
                    // SQLite stores booleans as INTEGER 0/1.
                    (false, true) => format!("COALESCE({x} <> 0, FALSE)"),
                    (false, false) => format!("({x} <> 0)"),
                }
            }
        })
    }
}

fn negate(s: String, negated: bool) -> String {
    if negated { format!("(NOT {s})") } else { s }
}

fn sql_op(op: CmpOp) -> &'static str {
    match op {
        CmpOp::Eq => "=",
        CmpOp::Ne => "<>",
        CmpOp::Gt => ">",
        CmpOp::Ge => ">=",
        CmpOp::Lt => "<",
        CmpOp::Le => "<=",
        CmpOp::Like | CmpOp::NotLike => "=",
    }
}
