//! AST, parser and printer.
//!
//! The parser is recursive descent with explicit limits (source length, nesting depth, list
//! size, number of terms) so that hostile filters produce an error instead of exhausting the
//! stack or the CPU. `&&`/`||` chains are stored flat (`And(Vec)`), so long chains do not
//! deepen the tree.

use crate::ExprError;
use crate::lexer::{Tok, Token, lex};
use std::fmt;

pub(crate) const MAX_SOURCE_CHARS: usize = 4096;
pub(crate) const MAX_DEPTH: usize = 64;
pub(crate) const MAX_LIST_ITEMS: usize = 500;
pub(crate) const MAX_TERMS: usize = 200;

/// `@auth.*` variables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthVar {
    Id,
    Email,
    Role,
    Verified,
    Tenant,
}

impl AuthVar {
    fn name(self) -> &'static str {
        match self {
            AuthVar::Id => "id",
            AuthVar::Email => "email",
            AuthVar::Role => "role",
            AuthVar::Verified => "verified",
            AuthVar::Tenant => "tenant",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    Text(String),
    Number(f64),
    Bool(bool),
    Null,
}

#[derive(Clone, Debug, PartialEq)]
pub enum OperandKind {
    Field(String),
    Auth(AuthVar),
    Data(String),
    Now,
    Lit(Literal),
}

/// A value-producing operand with its source position.
#[derive(Clone, Debug, PartialEq)]
pub struct Operand {
    pub kind: OperandKind,
    pub pos: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Like,
    NotLike,
}

impl CmpOp {
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Like => "~",
            CmpOp::NotLike => "!~",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    Or(Vec<Node>),
    And(Vec<Node>),
    Not(Box<Node>),
    Cmp {
        op: CmpOp,
        op_pos: usize,
        lhs: Operand,
        rhs: Operand,
    },
    In {
        lhs: Operand,
        op_pos: usize,
        items: Vec<Operand>,
    },
    /// A boolean operand used as a condition (`published`, `true`, `@auth.verified`).
    Bare(Operand),
}

/// A parsed expression. Parse once, then `check`, `to_sql` or `eval` it as often as needed.
#[derive(Clone, Debug)]
pub struct Expr {
    pub(crate) root: Node,
}

impl Expr {
    /// Names of the record fields referenced (not `@data.*`), deduplicated, in first-use order.
    /// The server uses it to know which columns a rule needs.
    pub fn fields(&self) -> Vec<String> {
        fn walk_op(o: &Operand, out: &mut Vec<String>) {
            if let OperandKind::Field(n) = &o.kind
                && !out.contains(n)
            {
                out.push(n.clone());
            }
        }
        fn walk(n: &Node, out: &mut Vec<String>) {
            match n {
                Node::Or(v) | Node::And(v) => v.iter().for_each(|c| walk(c, out)),
                Node::Not(c) => walk(c, out),
                Node::Cmp { lhs, rhs, .. } => {
                    walk_op(lhs, out);
                    walk_op(rhs, out);
                }
                Node::In { lhs, items, .. } => {
                    walk_op(lhs, out);
                    items.iter().for_each(|i| walk_op(i, out));
                }
                Node::Bare(o) => walk_op(o, out),
            }
        }
        let mut out = Vec::new();
        walk(&self.root, &mut out);
        out
    }

    /// True when the expression is exactly the literal `true` (an "open to everyone" rule),
    /// so the server can skip adding a WHERE clause.
    pub fn is_literal_true(&self) -> bool {
        matches!(
            &self.root,
            Node::Bare(Operand {
                kind: OperandKind::Lit(Literal::Bool(true)),
                ..
            })
        )
    }

    /// The AST with every position set to 0 (for structural comparison in tests).
    #[cfg(test)]
    pub(crate) fn without_positions(&self) -> Node {
        fn op(o: &Operand) -> Operand {
            Operand {
                kind: o.kind.clone(),
                pos: 0,
            }
        }
        fn go(n: &Node) -> Node {
            match n {
                Node::Or(v) => Node::Or(v.iter().map(go).collect()),
                Node::And(v) => Node::And(v.iter().map(go).collect()),
                Node::Not(c) => Node::Not(Box::new(go(c))),
                Node::Cmp {
                    op: o, lhs, rhs, ..
                } => Node::Cmp {
                    op: *o,
                    op_pos: 0,
                    lhs: op(lhs),
                    rhs: op(rhs),
                },
                Node::In { lhs, items, .. } => Node::In {
                    lhs: op(lhs),
                    op_pos: 0,
                    items: items.iter().map(op).collect(),
                },
                Node::Bare(o) => Node::Bare(op(o)),
            }
        }
        go(&self.root)
    }
}

// ---------------------------------------------------------------- printing

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Text(s) => {
                f.write_str("'")?;
                for c in s.chars() {
                    if c == '\'' || c == '\\' {
                        f.write_str("\\")?;
                    }
                    write!(f, "{c}")?;
                }
                f.write_str("'")
            }
            // Debug keeps a round-trippable representation and uses an exponent for
            // very large/small values, keeping the text short.
            Literal::Number(n) => write!(f, "{n:?}"),
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::Null => f.write_str("null"),
        }
    }
}

impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            OperandKind::Field(n) => f.write_str(n),
            OperandKind::Auth(a) => write!(f, "@auth.{}", a.name()),
            OperandKind::Data(n) => write!(f, "@data.{n}"),
            OperandKind::Now => f.write_str("@now"),
            OperandKind::Lit(l) => write!(f, "{l}"),
        }
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let child = |f: &mut fmt::Formatter<'_>, c: &Node| match c {
            Node::Or(_) | Node::And(_) => write!(f, "({c})"),
            _ => write!(f, "{c}"),
        };
        match self {
            Node::Or(v) | Node::And(v) => {
                let sep = if matches!(self, Node::Or(_)) {
                    " || "
                } else {
                    " && "
                };
                for (i, c) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_str(sep)?;
                    }
                    child(f, c)?;
                }
                Ok(())
            }
            Node::Not(c) => match &**c {
                Node::Bare(o) => write!(f, "!{o}"),
                other => write!(f, "!({other})"),
            },
            Node::Cmp { op, lhs, rhs, .. } => write!(f, "{lhs} {} {rhs}", op.symbol()),
            Node::In { lhs, items, .. } => {
                write!(f, "{lhs} in [")?;
                for (i, it) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{it}")?;
                }
                f.write_str("]")
            }
            Node::Bare(o) => write!(f, "{o}"),
        }
    }
}

/// Prints the expression in the filter syntax; the output parses back to the same AST.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.root)
    }
}

// ---------------------------------------------------------------- parsing

struct Parser {
    toks: Vec<Token>,
    i: usize,
    end: usize,
    depth: usize,
    terms: usize,
}

fn err(position: usize, message: impl Into<String>) -> ExprError {
    ExprError {
        position,
        message: message.into(),
    }
}

pub(crate) fn parse(src: &str) -> Result<Expr, ExprError> {
    let nchars = src.chars().count();
    if nchars > MAX_SOURCE_CHARS {
        return Err(err(
            MAX_SOURCE_CHARS,
            format!("expression too long (more than {MAX_SOURCE_CHARS} characters)"),
        ));
    }
    let toks = lex(src)?;
    if toks.is_empty() {
        return Err(err(0, "empty expression"));
    }
    let mut p = Parser {
        toks,
        i: 0,
        end: nchars,
        depth: 0,
        terms: 0,
    };
    let root = p.or()?;
    if let Some(t) = p.peek() {
        return Err(err(
            t.pos,
            format!(
                "unexpected {} after the end of the expression",
                t.tok.describe()
            ),
        ));
    }
    Ok(Expr { root })
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.i)
    }

    fn peek_tok(&self) -> Option<&Tok> {
        self.peek().map(|t| &t.tok)
    }

    fn here(&self) -> usize {
        self.peek().map_or(self.end, |t| t.pos)
    }

    fn unexpected(&self, wanted: &str) -> ExprError {
        match self.peek() {
            Some(t) => err(
                t.pos,
                format!("expected {wanted}, found {}", t.tok.describe()),
            ),
            None => err(self.end, format!("expected {wanted}, found end of input")),
        }
    }

    fn enter(&mut self) -> Result<(), ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(err(
                self.here(),
                format!("expression nested too deeply (more than {MAX_DEPTH} levels)"),
            ));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Node, ExprError> {
        let mut v = vec![self.and()?];
        while self.peek_tok() == Some(&Tok::Or) {
            self.i += 1;
            v.push(self.and()?);
        }
        Ok(if v.len() == 1 {
            v.remove(0)
        } else {
            Node::Or(v)
        })
    }

    fn and(&mut self) -> Result<Node, ExprError> {
        let mut v = vec![self.unary()?];
        while self.peek_tok() == Some(&Tok::And) {
            self.i += 1;
            v.push(self.unary()?);
        }
        Ok(if v.len() == 1 {
            v.remove(0)
        } else {
            Node::And(v)
        })
    }

    fn unary(&mut self) -> Result<Node, ExprError> {
        match self.peek_tok() {
            Some(Tok::Not) => {
                self.i += 1;
                self.enter()?;
                let inner = match self.peek_tok() {
                    Some(Tok::Not) | Some(Tok::LParen) => self.unary()?,
                    _ => {
                        // `!` binds tighter than comparisons: it applies to one operand.
                        let o = self.operand()?;
                        self.count_term(o.pos)?;
                        if let Some(t) = self.peek()
                            && (is_cmp(&t.tok) || t.tok == Tok::In)
                        {
                            return Err(err(
                                t.pos,
                                "'!' applies only to the operand before this operator; \
                                 write !(a = b) to negate a comparison",
                            ));
                        }
                        Node::Bare(o)
                    }
                };
                self.depth -= 1;
                Ok(Node::Not(Box::new(inner)))
            }
            Some(Tok::LParen) => {
                self.i += 1;
                self.enter()?;
                let inner = self.or()?;
                if self.peek_tok() != Some(&Tok::RParen) {
                    return Err(self.unexpected("')'"));
                }
                self.i += 1;
                self.depth -= 1;
                Ok(inner)
            }
            _ => self.comparison(),
        }
    }

    fn count_term(&mut self, pos: usize) -> Result<(), ExprError> {
        self.terms += 1;
        if self.terms > MAX_TERMS {
            return Err(err(
                pos,
                format!("too many conditions (more than {MAX_TERMS})"),
            ));
        }
        Ok(())
    }

    fn comparison(&mut self) -> Result<Node, ExprError> {
        let lhs = self.operand()?;
        self.count_term(lhs.pos)?;
        let Some(t) = self.peek().cloned() else {
            return Ok(Node::Bare(lhs));
        };
        let op = match t.tok {
            Tok::Eq => CmpOp::Eq,
            Tok::Ne => CmpOp::Ne,
            Tok::Gt => CmpOp::Gt,
            Tok::Ge => CmpOp::Ge,
            Tok::Lt => CmpOp::Lt,
            Tok::Le => CmpOp::Le,
            Tok::Like => CmpOp::Like,
            Tok::NotLike => CmpOp::NotLike,
            Tok::In => {
                self.i += 1;
                if self.peek_tok() != Some(&Tok::LBracket) {
                    return Err(self.unexpected("a list like ['a', 'b'] after 'in'"));
                }
                let items = self.list()?;
                return Ok(Node::In {
                    lhs,
                    op_pos: t.pos,
                    items,
                });
            }
            _ => return Ok(Node::Bare(lhs)),
        };
        self.i += 1;
        let rhs = self.operand()?;
        if let Some(t2) = self.peek()
            && (is_cmp(&t2.tok) || t2.tok == Tok::In)
        {
            return Err(err(
                t2.pos,
                "comparisons cannot be chained; combine them with && or ||",
            ));
        }
        Ok(Node::Cmp {
            op,
            op_pos: t.pos,
            lhs,
            rhs,
        })
    }

    fn list(&mut self) -> Result<Vec<Operand>, ExprError> {
        // at '['
        self.i += 1;
        let mut items = Vec::new();
        if self.peek_tok() == Some(&Tok::RBracket) {
            self.i += 1;
            return Ok(items);
        }
        loop {
            let t = self.peek().cloned();
            let lit = match t.as_ref().map(|t| &t.tok) {
                Some(Tok::Str(s)) => Literal::Text(s.clone()),
                Some(Tok::Num(n)) => Literal::Number(*n),
                Some(Tok::True) => Literal::Bool(true),
                Some(Tok::False) => Literal::Bool(false),
                Some(Tok::Null) => Literal::Null,
                _ => return Err(self.unexpected("a literal list item")),
            };
            let pos = t.map_or(self.end, |t| t.pos);
            if items.len() >= MAX_LIST_ITEMS {
                return Err(err(
                    pos,
                    format!("list too long (more than {MAX_LIST_ITEMS} items)"),
                ));
            }
            self.i += 1;
            items.push(Operand {
                kind: OperandKind::Lit(lit),
                pos,
            });
            match self.peek_tok() {
                Some(Tok::Comma) => self.i += 1,
                Some(Tok::RBracket) => {
                    self.i += 1;
                    return Ok(items);
                }
                _ => return Err(self.unexpected("',' or ']'")),
            }
        }
    }

    fn operand(&mut self) -> Result<Operand, ExprError> {
        let Some(t) = self.peek().cloned() else {
            return Err(self.unexpected("a value or field name"));
        };
        let kind = match t.tok {
            Tok::Ident(n) => OperandKind::Field(n),
            Tok::Str(s) => OperandKind::Lit(Literal::Text(s)),
            Tok::Num(n) => OperandKind::Lit(Literal::Number(n)),
            Tok::True => OperandKind::Lit(Literal::Bool(true)),
            Tok::False => OperandKind::Lit(Literal::Bool(false)),
            Tok::Null => OperandKind::Lit(Literal::Null),
            Tok::Var(v) => match v.as_str() {
                "now" => OperandKind::Now,
                "auth.id" => OperandKind::Auth(AuthVar::Id),
                "auth.email" => OperandKind::Auth(AuthVar::Email),
                "auth.role" => OperandKind::Auth(AuthVar::Role),
                "auth.verified" => OperandKind::Auth(AuthVar::Verified),
                "auth.tenant" => OperandKind::Auth(AuthVar::Tenant),
                _ => match v.strip_prefix("data.") {
                    Some(f) => OperandKind::Data(f.to_string()),
                    None => return Err(err(t.pos, format!("unknown variable '@{v}'"))),
                },
            },
            Tok::LBracket => {
                return Err(err(t.pos, "a list is only allowed on the right of 'in'"));
            }
            _ => return Err(self.unexpected("a value or field name")),
        };
        self.i += 1;
        Ok(Operand { kind, pos: t.pos })
    }
}

fn is_cmp(t: &Tok) -> bool {
    matches!(
        t,
        Tok::Eq | Tok::Ne | Tok::Gt | Tok::Ge | Tok::Lt | Tok::Le | Tok::Like | Tok::NotLike
    )
}
