//! Istio `networking.istio.io/v1` resource specs (VirtualService, DestinationRule, ServiceEntry, WorkloadEntry, WorkloadGroup, Gateway, Sidecar).
//!
//! Field names follow the protobuf JSON names of istio/api, so YAML written for Istio parses
//! unchanged; unknown fields are rejected so typos surface as errors.

mod common;
mod destination_rule;
mod gateway;
mod service_entry;
mod sidecar;
mod virtual_service;
mod workload_entry;
mod workload_group;

pub use common::*;
pub use destination_rule::*;
pub use gateway::*;
pub use service_entry::*;
pub use sidecar::*;
pub use virtual_service::*;
pub use workload_entry::*;
pub use workload_group::*;
