//! Who is calling, and whether a collection rule lets them do an operation.
//!
//! Every path that reads or writes records (list, view, create, update, delete, batch, expand)
//! asks this module; realtime, sync and files will too. Admins bypass rules; everyone else is
//! held to the collection's rule for the operation, and no rule means locked.

use ferrobase_expr::{AuthContext, Expr};

use crate::error::{Code, Error};

/// Admin roles, most powerful first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminRole {
    Owner,
    Admin,
    Support,
    Viewer,
}

impl AdminRole {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "owner" => Some(Self::Owner),
            "admin" => Some(Self::Admin),
            "support" => Some(Self::Support),
            "viewer" => Some(Self::Viewer),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Support => "support",
            Self::Viewer => "viewer",
        }
    }
    /// Owners and admins change schema and data; support and viewers only read.
    pub fn can_write(self) -> bool {
        matches!(self, Self::Owner | Self::Admin)
    }
}

/// The caller of a request.
#[derive(Clone, Debug)]
pub enum Principal {
    Anonymous,
    Admin {
        id: String,
        email: String,
        role: AdminRole,
    },
    User {
        id: String,
        email: String,
        verified: bool,
        role: String,
        tenant: String,
        /// The session the access token belongs to.
        session: String,
    },
    /// A server-to-server caller (`fbk_…`), limited by its scopes.
    ApiKey {
        id: String,
        name: String,
        scopes: Vec<String>,
    },
}

/// Scopes an API key may carry.
pub const SCOPES: [&str; 6] = [
    "records:read",
    "records:write",
    "push:send",
    "metrics:read",
    "users:manage",
    "admin",
];

/// Record operations a rule can govern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    List,
    View,
    Create,
    Update,
    Delete,
}

impl Principal {
    /// The `@auth.*` values rules and filters see.
    pub fn auth_context(&self) -> AuthContext {
        match self {
            Principal::Anonymous => AuthContext::default(),
            Principal::Admin { id, email, role } => AuthContext {
                id: id.clone(),
                email: email.clone(),
                role: role.as_str().into(),
                verified: true,
                tenant: String::new(),
            },
            Principal::ApiKey { id, .. } => AuthContext {
                id: id.clone(),
                role: "api_key".into(),
                ..AuthContext::default()
            },
            Principal::User {
                id,
                email,
                verified,
                role,
                tenant,
                ..
            } => AuthContext {
                id: id.clone(),
                email: email.clone(),
                role: role.clone(),
                verified: *verified,
                tenant: tenant.clone(),
            },
        }
    }

    /// The admin role this caller acts with: an admin's own role, or `admin` for an API key
    /// with the `admin` scope.
    pub fn admin_role(&self) -> Option<AdminRole> {
        match self {
            Principal::Admin { role, .. } => Some(*role),
            Principal::ApiKey { scopes, .. } if scopes.iter().any(|s| s == "admin") => {
                Some(AdminRole::Admin)
            }
            _ => None,
        }
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        match self {
            Principal::ApiKey { scopes, .. } => scopes.iter().any(|s| s == scope || s == "admin"),
            _ => false,
        }
    }

    pub fn is_anonymous(&self) -> bool {
        matches!(self, Principal::Anonymous)
    }

    /// The error for an operation this caller may not do at all: 401 when anonymous (signing in
    /// might help), 403 otherwise.
    pub fn denied(&self, what: &str) -> Error {
        if self.is_anonymous() {
            Error::unauthenticated(format!("Sign in to {what}."))
        } else {
            Error::forbidden(format!("You may not {what}."))
        }
    }

    /// Requires an admin whose role allows `write` (or any admin for reads).
    pub fn require_admin(&self, write: bool) -> Result<AdminRole, Error> {
        if let Some(role) = self.admin_role()
            && matches!(self, Principal::ApiKey { .. })
        {
            return Ok(role);
        }
        match self {
            Principal::Admin { role, .. } if !write || role.can_write() => Ok(*role),
            Principal::Admin { .. } => Err(Error::forbidden(
                "Your admin role may read but not change this.",
            )),
            Principal::Anonymous => Err(Error::unauthenticated("An admin token is required.")),
            Principal::User { .. } | Principal::ApiKey { .. } => {
                Err(Error::new(Code::Forbidden, "Admins only."))
            }
        }
    }
}

/// What a caller may do for one operation on one collection.
pub enum Access<'a> {
    /// No condition applies: admins with write rights (or reads by any admin), API keys with
    /// the scope, and a rule that is the literal `true` (so an open list counts with a bare
    /// `count(*)`, which SQLite answers from the b-tree without visiting rows, instead of
    /// testing a constant on every row).
    Bypass,
    /// Held to this rule.
    Rule(&'a Expr),
}

/// Decides how `op` is governed for `principal`, or refuses outright when locked.
pub fn access<'a>(
    principal: &Principal,
    rule: Option<&'a Expr>,
    op: Op,
    collection: &str,
) -> Result<Access<'a>, Error> {
    if let Some(role) = principal.admin_role() {
        let write = matches!(op, Op::Create | Op::Update | Op::Delete);
        if !write || role.can_write() {
            return Ok(Access::Bypass);
        }
        return Err(Error::forbidden(format!(
            "The {} role may not change records.",
            role.as_str()
        )));
    }
    if let Principal::ApiKey { name, .. } = principal {
        let write = matches!(op, Op::Create | Op::Update | Op::Delete);
        let needed = if write {
            "records:write"
        } else {
            "records:read"
        };
        if principal.has_scope(needed) {
            return Ok(Access::Bypass);
        }
        return Err(Error::forbidden(format!(
            "The API key `{name}` lacks the `{needed}` scope."
        )));
    }
    match rule {
        Some(r) if r.is_literal_true() => Ok(Access::Bypass),
        Some(r) => Ok(Access::Rule(r)),
        None => {
            let verb = match op {
                Op::List => "list",
                Op::View => "view",
                Op::Create => "create",
                Op::Update => "update",
                Op::Delete => "delete",
            };
            Err(principal.denied(&format!("{verb} records of `{collection}`")))
        }
    }
}
