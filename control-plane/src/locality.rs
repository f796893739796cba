//! Localities (`region/zone/subzone`) of endpoints and proxies, and Istio's rules over them:
//! where they come from (WorkloadEntry `locality`, the node's topology labels, the
//! `istio-locality` pod label), how a rule's `from`/`to` matches one (`*` wildcards), and how
//! close an endpoint is to a proxy (the failover priority).

use std::fmt;

/// Kubernetes' region label on nodes.
pub const REGION_LABEL: &str = "topology.kubernetes.io/region";
/// Kubernetes' zone label on nodes.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// Istio's sub-zone label on nodes.
pub const SUBZONE_LABEL: &str = "topology.istio.io/subzone";
/// Istio's pod label that overrides the node's locality, `region.zone.subzone` (dots: a
/// label value cannot hold `/`).
pub const POD_LOCALITY_LABEL: &str = "istio-locality";

/// Where a workload runs. Any part may be empty (unknown).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Locality {
    pub region: String,
    pub zone: String,
    pub subzone: String,
}

impl Locality {
    /// Parses `region/zone/subzone` (WorkloadEntry `locality`, the proxy's `--locality`);
    /// missing parts are empty.
    pub fn parse(text: &str) -> Self {
        Self::split(text, '/')
    }

    /// Parses the `istio-locality` pod label, `region.zone.subzone`.
    pub fn from_pod_label(text: &str) -> Self {
        Self::split(text, '.')
    }

    fn split(text: &str, separator: char) -> Self {
        let mut parts = text.trim().splitn(3, separator).map(str::to_string);
        Self {
            region: parts.next().unwrap_or_default(),
            zone: parts.next().unwrap_or_default(),
            subzone: parts.next().unwrap_or_default(),
        }
    }

    /// From a node's (or an object's) topology labels.
    pub fn from_labels(labels: &std::collections::BTreeMap<String, String>) -> Self {
        let get = |key: &str| labels.get(key).cloned().unwrap_or_default();
        Self {
            region: get(REGION_LABEL),
            zone: get(ZONE_LABEL),
            subzone: get(SUBZONE_LABEL),
        }
    }

    /// Whether nothing is known.
    pub fn is_empty(&self) -> bool {
        self.region.is_empty() && self.zone.is_empty() && self.subzone.is_empty()
    }

    /// The value this locality gives a topology label (`None` for other labels): Istio adds
    /// these labels to endpoints and proxies, for `failoverPriority`.
    pub fn label(&self, key: &str) -> Option<&str> {
        match key {
            REGION_LABEL => Some(&self.region),
            ZONE_LABEL => Some(&self.zone),
            SUBZONE_LABEL => Some(&self.subzone),
            _ => None,
        }
    }

    /// Istio's `LocalityMatch`: `rule` is `region[/zone[/subzone]]`, `*` matching anything;
    /// parts the rule leaves out match anything.
    pub fn matches(&self, rule: &str) -> bool {
        let rule = Self::parse(rule);
        let part = |rule: &str, mine: &str| rule == "*" || rule.is_empty() || rule == mine;
        // The region must be given (an empty rule region matches only an empty region).
        (rule.region == "*" || rule.region == self.region)
            && part(&rule.zone, &self.zone)
            && part(&rule.subzone, &self.subzone)
    }

    /// Istio's `LbPriority`: 0 when region, zone and subzone are the same as `proxy`'s, 1
    /// when region and zone are, 2 when the region is, 3 otherwise.
    pub fn priority_from(&self, proxy: &Locality) -> u32 {
        if self.region != proxy.region {
            3
        } else if self.zone != proxy.zone {
            2
        } else if self.subzone != proxy.subzone {
            1
        } else {
            0
        }
    }
}

impl fmt::Display for Locality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.region, self.zone, self.subzone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_spellings() {
        let l = Locality::parse("us-east/us-east-1a/rack1");
        assert_eq!(
            (l.region.as_str(), l.zone.as_str(), l.subzone.as_str()),
            ("us-east", "us-east-1a", "rack1")
        );
        assert_eq!(Locality::from_pod_label("us-east.us-east-1a.rack1"), l);
        assert_eq!(Locality::parse("eu").zone, "");
        assert!(Locality::parse("").is_empty());
        assert_eq!(l.to_string(), "us-east/us-east-1a/rack1");
    }

    #[test]
    fn matches_as_istio() {
        let l = Locality::parse("us-east/zone1/sub1");
        for rule in [
            "us-east",
            "us-east/*",
            "us-east/zone1",
            "us-east/zone1/sub1",
            "*",
            "*/zone1",
            "us-east/*/sub1",
        ] {
            assert!(l.matches(rule), "{rule}");
        }
        for rule in [
            "us-west",
            "us-east/zone2",
            "us-east/zone1/sub2",
            "",
            "*/zone2",
        ] {
            assert!(!l.matches(rule), "{rule}");
        }
    }

    #[test]
    fn priority_counts_the_first_difference() {
        let proxy = Locality::parse("r/z/s");
        assert_eq!(Locality::parse("r/z/s").priority_from(&proxy), 0);
        assert_eq!(Locality::parse("r/z/t").priority_from(&proxy), 1);
        assert_eq!(Locality::parse("r/y/s").priority_from(&proxy), 2);
        assert_eq!(Locality::parse("q/z/s").priority_from(&proxy), 3);
    }
}
