//! The binary's wiring of provider plugins into the server: each `[push.<name>]` table of the
//! server config goes to the plugin of that name. Adding a provider is a new crate under
//! `plugins/` and one arm here; the server crate does not change.

use std::sync::Arc;

use ferrobase_plugin_api::PushProvider;

/// Builds the push providers configured in `[push.<name>]`, in name order (a device goes to
/// the first provider listing its platform). An unknown name or a bad table stops the start
/// with a message naming the section.
pub fn push_providers(
    tables: &std::collections::BTreeMap<String, toml::Table>,
) -> Result<Vec<Arc<dyn PushProvider>>, String> {
    let mut out: Vec<Arc<dyn PushProvider>> = Vec::new();
    for (name, table) in tables {
        let value = toml::Value::Table(table.clone());
        let bad = |e: &dyn std::fmt::Display| format!("[push.{name}]: {e}");
        match name.as_str() {
            "apns" => {
                let config: ferrobase_apns::Config = value.try_into().map_err(|e| bad(&e))?;
                out.push(Arc::new(
                    ferrobase_apns::ApnsProvider::new(config).map_err(|e| bad(&e))?,
                ));
            }
            "fcm" => {
                let config: ferrobase_fcm::Config = value.try_into().map_err(|e| bad(&e))?;
                out.push(Arc::new(
                    ferrobase_fcm::FcmProvider::new(config).map_err(|e| bad(&e))?,
                ));
            }
            other => {
                return Err(format!(
                    "[push.{other}]: unknown push provider (this build has apns and fcm)"
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_providers_and_bad_tables_are_named() {
        let mut t = std::collections::BTreeMap::new();
        t.insert("webpush".to_owned(), toml::Table::new());
        let err = push_providers(&t).err().unwrap_or_default();
        assert!(err.contains("[push.webpush]"), "{err}");
        let mut t = std::collections::BTreeMap::new();
        t.insert("apns".to_owned(), toml::Table::new());
        let err = push_providers(&t).err().unwrap_or_default();
        assert!(err.starts_with("[push.apns]"), "{err}");
        assert!(push_providers(&Default::default()).is_ok_and(|v| v.is_empty()));
    }
}
