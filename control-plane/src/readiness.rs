//! Controller readiness, as `/ready` reports it: ready once the source has loaded
//! everything once (local mode: the first full scan of `--config-dir`; Kubernetes mode:
//! the initial list of every watched resource whose API exists) and a model built from such
//! a snapshot is what ADS serves. Never goes back to not ready.

/// What the controller still waits for before it is ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// What the source has not loaded yet (the snapshot's `unsynced`).
    pub unsynced: Vec<String>,
    /// Whether a model built from a synced snapshot has been published to ADS.
    pub model_published: bool,
}

impl Readiness {
    /// Before the source's first snapshot: waiting for `unsynced` and for a model.
    pub fn starting(unsynced: Vec<String>) -> Self {
        Self {
            unsynced,
            model_published: false,
        }
    }

    pub fn is_ready(&self) -> bool {
        self.unsynced.is_empty() && self.model_published
    }

    /// Takes into account that the model built from a snapshot with `unsynced` pending
    /// resources is being served. Returns whether anything changed.
    pub fn served(&mut self, unsynced: &[String]) -> bool {
        if self.is_ready() {
            return false;
        }
        let before = self.clone();
        self.unsynced = unsynced.to_vec();
        self.model_published |= unsynced.is_empty();
        *self != before
    }

    /// What it waits for, one reason per item (empty when ready).
    pub fn waiting_for(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        if !self.unsynced.is_empty() {
            reasons.push(format!("the initial list of: {}", self.unsynced.join(", ")));
        }
        if !self.model_published {
            reasons.push(
                "the first model built from a complete snapshot of the config source".to_string(),
            );
        }
        reasons
    }

    /// The `/ready` body.
    pub fn describe(&self) -> String {
        if self.is_ready() {
            "ready\n".to_string()
        } else {
            let mut text = "not ready; waiting for:\n".to_string();
            for reason in self.waiting_for() {
                text.push_str("- ");
                text.push_str(&reason);
                text.push('\n');
            }
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_after_a_model_from_a_synced_snapshot() {
        let mut readiness =
            Readiness::starting(vec!["services".to_string(), "virtualservices".to_string()]);
        assert!(!readiness.is_ready());
        assert_eq!(
            readiness.describe(),
            "not ready; waiting for:\n- the initial list of: services, virtualservices\n- the first model built from a complete snapshot of the config source\n"
        );
        // A partial snapshot was served: still waiting for what is missing.
        assert!(readiness.served(&["virtualservices".to_string()]));
        assert!(!readiness.is_ready());
        assert_eq!(readiness.waiting_for().len(), 2);
        assert!(!readiness.served(&["virtualservices".to_string()]));
        // The complete one.
        assert!(readiness.served(&[]));
        assert!(readiness.is_ready());
        assert_eq!(readiness.describe(), "ready\n");
        assert!(readiness.waiting_for().is_empty());
        // Never back.
        assert!(!readiness.served(&["services".to_string()]));
        assert!(readiness.is_ready());
    }
}
