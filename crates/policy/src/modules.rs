//! Reading rule names out of loaded modules.
//!
//! regorus exposes its syntax tree only through `regorus::unstable`; this module is the one
//! place that reads it, so a change of that API touches nothing else.

use regorus::unstable::{Rule, RuleHead};
use regorus::Engine;

/// A rule defined in a module: its package (without `data.`), name and file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct RuleRef {
    pub package: String,
    pub name: String,
    pub file: String,
}

/// Every complete or partial rule (not functions) of every module, in source order.
pub(crate) fn rules(engine: &mut Engine) -> Vec<RuleRef> {
    let mut out = Vec::new();
    for module in engine.get_modules().iter() {
        let package = module.package.refr.span().text().to_owned();
        let file = module.package.span.source.file().clone();
        for rule in &module.policy {
            let refr = match rule.as_ref() {
                Rule::Spec {
                    head: RuleHead::Compr { refr, .. } | RuleHead::Set { refr, .. },
                    ..
                } => refr,
                Rule::Default { refr, args, .. } if args.is_empty() => refr,
                _ => continue,
            };
            out.push(RuleRef {
                package: package.clone(),
                name: refr.span().text().to_owned(),
                file: file.clone(),
            });
        }
    }
    out
}
