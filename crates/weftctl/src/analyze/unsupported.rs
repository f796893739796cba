//! What Weft accepts but its proxies do not act on yet (WEFT0008): every field and kind
//! [`weft_api::unsupported`] finds in an object, in the words the controller logs when it
//! loads the object, so that it is seen before the object is applied.

use super::input::Snapshot;
use super::{Finding, UNSUPPORTED_CONFIG};

pub fn analyze(snapshot: &Snapshot) -> Vec<Finding> {
    let mut findings = Vec::new();
    for object in &snapshot.objects {
        for found in weft_api::unsupported::fields(&object.object) {
            let text = if found.path.is_empty() {
                found.message
            } else {
                format!("{}: {}", found.path, found.message)
            };
            findings.push(
                Finding::new(UNSUPPORTED_CONFIG, object.resource(), text)
                    .at(object.origin.as_ref()),
            );
        }
    }
    findings
}
