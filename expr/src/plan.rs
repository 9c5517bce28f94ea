//! Type checking. Each condition is turned into a [`Plan`] that records the *effective* type of
//! every operand (e.g. a text literal compared with a date is a date; a number literal
//! compared with an integer field binds as an integer). Both the SQL compiler and the
//! evaluator consume the same plan, which is what keeps them in agreement.

use crate::ast::{AuthVar, CmpOp, Literal, Node, Operand, OperandKind};
use crate::{ExprError, Scope, ValueType, parse_date};

fn err(position: usize, message: impl Into<String>) -> ExprError {
    ExprError {
        position,
        message: message.into(),
    }
}

/// The type of an operand before it meets the other side of a comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Static {
    Ty(ValueType),
    /// A text literal: text, or a date when compared with a date.
    TextLit,
    /// A number literal: binds as an integer when compared with an integer and integral.
    NumLit,
    NullLit,
}

/// An operand together with the type it is used at.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Typed<'e> {
    pub op: &'e Operand,
    pub ty: ValueType,
}

/// How values of both sides are compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Text,
    Num,
    Bool,
    Date,
}

#[derive(Debug)]
pub(crate) enum Plan<'e> {
    /// `x = null` (negated: `x != null`).
    IsNull {
        x: Typed<'e>,
        negated: bool,
    },
    /// `=`, `!=`, `<`, `<=`, `>`, `>=`.
    Cmp {
        op: CmpOp,
        kind: Kind,
        l: Typed<'e>,
        r: Typed<'e>,
    },
    /// Text `~` text (negated: `!~`).
    TextContains {
        l: Typed<'e>,
        r: Typed<'e>,
        negated: bool,
    },
    /// TextList `~` text: the list has an element equal to r.
    ListContains {
        list: Typed<'e>,
        item: Typed<'e>,
        negated: bool,
    },
    In {
        l: Typed<'e>,
        items: Vec<Typed<'e>>,
    },
    /// A boolean operand used as a condition.
    Bare(Typed<'e>),
}

fn type_name(t: ValueType) -> &'static str {
    match t {
        ValueType::Text => "text",
        ValueType::Number => "number",
        ValueType::Integer => "integer",
        ValueType::Bool => "bool",
        ValueType::Date => "date",
        ValueType::TextList => "list",
        ValueType::Json => "json",
    }
}

fn static_name(s: Static) -> &'static str {
    match s {
        Static::Ty(t) => type_name(t),
        Static::TextLit => "text",
        Static::NumLit => "number",
        Static::NullLit => "null",
    }
}

fn static_type(o: &Operand, scope: &dyn Scope) -> Result<Static, ExprError> {
    Ok(match &o.kind {
        OperandKind::Field(n) => match scope.field(n) {
            Some(f) => Static::Ty(f.ty),
            None => return Err(err(o.pos, format!("unknown field '{n}'"))),
        },
        OperandKind::Data(n) => match scope.field(n) {
            Some(f) => Static::Ty(f.ty),
            None => return Err(err(o.pos, format!("unknown field '@data.{n}'"))),
        },
        OperandKind::Auth(AuthVar::Verified) => Static::Ty(ValueType::Bool),
        OperandKind::Auth(_) => Static::Ty(ValueType::Text),
        OperandKind::Now => Static::Ty(ValueType::Date),
        OperandKind::Lit(Literal::Text(_)) => Static::TextLit,
        OperandKind::Lit(Literal::Number(_)) => Static::NumLit,
        OperandKind::Lit(Literal::Bool(_)) => Static::Ty(ValueType::Bool),
        OperandKind::Lit(Literal::Null) => Static::NullLit,
    })
}

/// The effective type of `me` when compared with `other`.
fn effective(me: Static, other: Static) -> ValueType {
    match (me, other) {
        (Static::Ty(t), _) => t,
        (Static::TextLit, Static::Ty(ValueType::Date)) => ValueType::Date,
        (Static::TextLit, _) => ValueType::Text,
        (Static::NumLit, Static::Ty(ValueType::Integer)) => ValueType::Integer,
        (Static::NumLit, _) => ValueType::Number,
        (Static::NullLit, Static::NullLit) => ValueType::Text,
        (Static::NullLit, o) => effective(o, Static::NullLit),
    }
}

/// A text literal used as a date must parse.
fn check_date_lit(o: &Operand, ty: ValueType) -> Result<(), ExprError> {
    if ty == ValueType::Date
        && let OperandKind::Lit(Literal::Text(s)) = &o.kind
        && parse_date(s).is_none()
    {
        return Err(err(
            o.pos,
            format!("invalid date '{s}' (use RFC 3339, 'YYYY-MM-DD HH:MM:SS' or 'YYYY-MM-DD')"),
        ));
    }
    Ok(())
}

fn kind_of(l: ValueType, r: ValueType) -> Option<Kind> {
    use ValueType::*;
    match (l, r) {
        (Text, Text) => Some(Kind::Text),
        (Number | Integer, Number | Integer) => Some(Kind::Num),
        (Bool, Bool) => Some(Kind::Bool),
        (Date, Date) => Some(Kind::Date),
        _ => None,
    }
}

fn mismatch(pos: usize, ls: Static, rs: Static) -> ExprError {
    err(
        pos,
        format!(
            "type mismatch: cannot compare {} with {}",
            static_name(ls),
            static_name(rs)
        ),
    )
}

pub(crate) fn plan_cmp<'e>(
    op: CmpOp,
    op_pos: usize,
    lhs: &'e Operand,
    rhs: &'e Operand,
    scope: &dyn Scope,
) -> Result<Plan<'e>, ExprError> {
    let ls = static_type(lhs, scope)?;
    let rs = static_type(rhs, scope)?;
    let l = Typed {
        op: lhs,
        ty: effective(ls, rs),
    };
    let r = Typed {
        op: rhs,
        ty: effective(rs, ls),
    };
    // Comparisons with the null literal are presence tests.
    if ls == Static::NullLit || rs == Static::NullLit {
        let x = if ls == Static::NullLit { r } else { l };
        return match op {
            CmpOp::Eq => Ok(Plan::IsNull { x, negated: false }),
            CmpOp::Ne => Ok(Plan::IsNull { x, negated: true }),
            _ => Err(err(op_pos, "null can only be compared with = or !=")),
        };
    }
    if l.ty == ValueType::Json || r.ty == ValueType::Json {
        let pos = if l.ty == ValueType::Json {
            rhs.pos
        } else {
            lhs.pos
        };
        return Err(err(
            pos,
            "json fields can only be compared with null (= null or != null)",
        ));
    }
    check_date_lit(lhs, l.ty)?;
    check_date_lit(rhs, r.ty)?;
    if matches!(op, CmpOp::Like | CmpOp::NotLike) {
        let negated = op == CmpOp::NotLike;
        return match (l.ty, r.ty) {
            (ValueType::Text, ValueType::Text) => Ok(Plan::TextContains { l, r, negated }),
            (ValueType::TextList, ValueType::Text) => Ok(Plan::ListContains {
                list: l,
                item: r,
                negated,
            }),
            (ValueType::Text | ValueType::TextList, _) => Err(mismatch(rhs.pos, ls, rs)),
            _ => Err(err(
                op_pos,
                format!(
                    "'{}' needs a text or list on the left, found {}",
                    op.symbol(),
                    static_name(ls)
                ),
            )),
        };
    }
    if l.ty == ValueType::TextList || r.ty == ValueType::TextList {
        return Err(err(
            op_pos,
            format!(
                "lists support only ~, !~, = null and != null, not '{}'",
                op.symbol()
            ),
        ));
    }
    let kind = kind_of(l.ty, r.ty).ok_or_else(|| mismatch(rhs.pos, ls, rs))?;
    if kind == Kind::Bool && !matches!(op, CmpOp::Eq | CmpOp::Ne) {
        return Err(err(
            op_pos,
            format!("booleans support only = and !=, not '{}'", op.symbol()),
        ));
    }
    Ok(Plan::Cmp { op, kind, l, r })
}

pub(crate) fn plan_in<'e>(
    lhs: &'e Operand,
    op_pos: usize,
    items: &'e [Operand],
    scope: &dyn Scope,
) -> Result<Plan<'e>, ExprError> {
    let ls = static_type(lhs, scope)?;
    // The left side's type does not depend on the items unless it is a literal; then the
    // first non-null item decides (e.g. `'2024-01-01' in [...]` stays text).
    let lt = effective(ls, Static::NullLit);
    if matches!(lt, ValueType::TextList | ValueType::Json) {
        return Err(err(
            op_pos,
            format!("'in' is not supported on {} values", type_name(lt)),
        ));
    }
    if ls == Static::NullLit {
        return Err(err(lhs.pos, "'null in [...]' is never true; use = null"));
    }
    let mut typed = Vec::with_capacity(items.len());
    for it in items {
        let is = static_type(it, scope)?;
        let t = Typed {
            op: it,
            ty: effective(is, ls),
        };
        if is != Static::NullLit {
            check_date_lit(it, t.ty)?;
            kind_of(lt, t.ty).ok_or_else(|| mismatch(it.pos, ls, is))?;
        }
        typed.push(t);
    }
    Ok(Plan::In {
        l: Typed { op: lhs, ty: lt },
        items: typed,
    })
}

pub(crate) fn plan_bare<'e>(o: &'e Operand, scope: &dyn Scope) -> Result<Plan<'e>, ExprError> {
    let s = static_type(o, scope)?;
    if s != Static::Ty(ValueType::Bool) {
        return Err(err(
            o.pos,
            format!(
                "expected a condition, found a {} value (compare it with something)",
                static_name(s)
            ),
        ));
    }
    Ok(Plan::Bare(Typed {
        op: o,
        ty: ValueType::Bool,
    }))
}

/// Plans a leaf node (anything but And/Or/Not).
pub(crate) fn plan_leaf<'e>(n: &'e Node, scope: &dyn Scope) -> Result<Plan<'e>, ExprError> {
    match n {
        Node::Cmp {
            op,
            op_pos,
            lhs,
            rhs,
        } => plan_cmp(*op, *op_pos, lhs, rhs, scope),
        Node::In { lhs, op_pos, items } => plan_in(lhs, *op_pos, items, scope),
        Node::Bare(o) => plan_bare(o, scope),
        Node::Or(_) | Node::And(_) | Node::Not(_) => Err(err(0, "internal: not a leaf")),
    }
}

pub(crate) fn check(n: &Node, scope: &dyn Scope) -> Result<(), ExprError> {
    match n {
        Node::Or(v) | Node::And(v) => v.iter().try_for_each(|c| check(c, scope)),
        Node::Not(c) => check(c, scope),
        leaf => plan_leaf(leaf, scope).map(|_| ()),
    }
}

/// The value bound for a non-field operand used at type `t.ty`. The evaluator uses the very
/// same values, so literal coercions (date parsing, integer binding) cannot diverge.
pub(crate) fn param_value(t: Typed<'_>, ctx: &crate::Context) -> crate::SqlParam {
    use crate::SqlParam;
    match &t.op.kind {
        OperandKind::Field(_) => SqlParam::Null,
        OperandKind::Lit(Literal::Null) => SqlParam::Null,
        OperandKind::Lit(Literal::Bool(b)) => SqlParam::Bool(*b),
        OperandKind::Lit(Literal::Text(s)) => {
            if t.ty == ValueType::Date {
                parse_date(s).map_or(SqlParam::Null, SqlParam::Time)
            } else {
                SqlParam::Text(s.clone())
            }
        }
        OperandKind::Lit(Literal::Number(n)) => number_param(*n, t.ty),
        OperandKind::Auth(a) => match a {
            AuthVar::Id => SqlParam::Text(ctx.auth.id.clone()),
            AuthVar::Email => SqlParam::Text(ctx.auth.email.clone()),
            AuthVar::Role => SqlParam::Text(ctx.auth.role.clone()),
            AuthVar::Tenant => SqlParam::Text(ctx.auth.tenant.clone()),
            AuthVar::Verified => SqlParam::Bool(ctx.auth.verified),
        },
        OperandKind::Now => SqlParam::Time(crate::truncate_micros(ctx.now)),
        OperandKind::Data(name) => {
            let v = ctx.data.and_then(|d| d.get(name));
            json_param(v, t.ty)
        }
    }
}

/// Integral numbers compared with integer columns bind as `Int` (exact BIGINT comparison).
fn number_param(n: f64, ty: ValueType) -> crate::SqlParam {
    // 2^63 as f64; values in [-2^63, 2^63) convert exactly when integral.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if ty == ValueType::Integer && n.fract() == 0.0 && (-LIMIT..LIMIT).contains(&n) {
        crate::SqlParam::Int(n as i64)
    } else {
        crate::SqlParam::Float(n)
    }
}

/// Converts a JSON value (from `@data`) to a parameter of type `ty`. A value of the wrong
/// JSON type is treated as null: the server validates bodies before rules run, and null is
/// the conservative reading.
pub(crate) fn json_param(v: Option<&serde_json::Value>, ty: ValueType) -> crate::SqlParam {
    use crate::SqlParam;
    use serde_json::Value;
    let Some(v) = v else {
        return SqlParam::Null;
    };
    match (ty, v) {
        (_, Value::Null) => SqlParam::Null,
        (ValueType::Text, Value::String(s)) => SqlParam::Text(s.clone()),
        (ValueType::Number, Value::Number(n)) => n.as_f64().map_or(SqlParam::Null, SqlParam::Float),
        (ValueType::Integer, Value::Number(n)) => match n.as_i64() {
            Some(i) => SqlParam::Int(i),
            None => n.as_f64().map_or(SqlParam::Null, SqlParam::Float),
        },
        (ValueType::Bool, Value::Bool(b)) => SqlParam::Bool(*b),
        (ValueType::Date, Value::String(s)) => parse_date(s).map_or(SqlParam::Null, SqlParam::Time),
        (ValueType::TextList, Value::Array(_)) | (ValueType::Json, _) => {
            SqlParam::Text(v.to_string())
        }
        _ => SqlParam::Null,
    }
}
